/* The command line reader (client.c) on any bytes a client sends, in one
 * read or many: every line it returns is the client's bytes up to an LF with
 * one CR before it removed, never longer than the limit; a longer line is
 * reported as too long and its bytes never show up in a later line. Checked
 * against a model of qmail-smtpd's rule written here. */
#include "fuzz.h"
#include "client.h"
#include "session_end.h"
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define MAX 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static stralloc line;
  static int null_out = -1;
  int p[2];
  if (size > 60000 || pipe(p) < 0) return 0;
  if (null_out < 0) null_out = open("/dev/null", O_WRONLY);
  if (write(p[1], data, size) != (ssize_t)size) { close(p[0]); close(p[1]); return 0; }
  close(p[1]);
  client_start(p[0], null_out, 1000);
  size_t pos = 0;   /* the model's place in data */
  for (;;) {
    enum line_status st = client_line(&line, MAX);
    /* the model: the next LF ends the line */
    const uint8_t *lf = pos < size ? memchr(data + pos, '\n', size - pos) : 0;
    if (st == LINE_EOF) {
      /* no more LF, or a too-long remainder dropped before its LF */
      CHECK(!lf || (size_t)(lf - data) - pos + 1 > MAX);
      break;
    }
    CHECK(lf);
    size_t len = (size_t)(lf - data) - pos;
    if (st == LINE_TOO_LONG) {
      CHECK(len + 1 > MAX);
    } else {
      size_t want = len && data[pos + len - 1] == '\r' ? len - 1 : len;
      CHECK(len + 1 <= MAX && line.len == want && !memcmp(line.s, data + pos, want));
    }
    pos += len + 1;
  }
  /* another session's reader starts clean */
  const char *rest;
  client_consume(client_unread(&rest));
  close(p[0]);
  return 0;
}
