/* prog's reply reader (stream.c) on any bytes prog could write: each reply it
 * accepts is whole lines "NNN-"... "NNN " (or a bare "NNN"), CRLF-ended,
 * the code that of its first line, within the reply size limit; what it
 * refuses, it refuses without reading past it. */
#include "fuzz.h"
#include "stream.h"
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static char space[8192];
  static stralloc reply;
  int p[2];
  if (size > 60000 || pipe(p) < 0) return 0;   /* a pipe holds 64 KB unread */
  if (write(p[1], data, size) != (ssize_t)size) { close(p[0]); close(p[1]); return 0; }
  close(p[1]);
  struct stream s;
  stream_init(&s, p[0], space, sizeof space);
  for (;;) {
    int code;
    int r = reply_read(&s, &reply, &code, deadline_in(1000));
    if (r <= 0) break;
    CHECK(code >= 200 && code <= 599);
    CHECK(reply.len >= 5 && reply.len <= 65536);
    size_t pos = 0;
    while (pos < reply.len) {
      const char *l = reply.s + pos;
      const char *lf = memchr(l, '\n', reply.len - pos);
      CHECK(lf && lf - l >= 4 && lf[-1] == '\r');
      CHECK(l[0] == '0' + code / 100 || pos > 0);
      size_t len = (size_t)(lf - l) - 1;
      pos = (size_t)(lf - reply.s) + 1;
      int last = pos == reply.len;
      CHECK(last ? (len == 3 || l[3] != '-') : (len > 3 && l[3] == '-'));
    }
  }
  close(p[0]);
  return 0;
}
