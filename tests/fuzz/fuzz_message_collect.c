/* Collecting Hdrs and Body from DATA bytes (as relayed: only CRLF line ends,
 * the last line ended too, the terminator not), fed in pieces: memory stays within the caps however the
 * client folds or pads, Hdrs is a list of whole fields each starting with a
 * field name and a colon, and the body size counts every body byte. */
#include "fuzz.h"
#include "message_collect.h"
#include "netstring.h"
#include <string.h>

#define HDRS_MAX 4096
#define BODY_MAX 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct message_collect c;
  static stralloc clean;
  if (size < 1) return 0;
  unsigned seed = data[0];
  /* only CRLF line ends reach it: turn the input's CR/LF into CRLF pairs */
  clean.len = 0;
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == '\n' || data[i] == '\r') stralloc_cats(&clean, "\r\n");
    else stralloc_catb(&clean, (const char *)data + i, 1);
  }
  if (clean.len && clean.s[clean.len - 1] != '\n') stralloc_cats(&clean, "\r\n");
  message_collect_start(&c, BODY_MAX, HDRS_MAX);
  size_t pos = 0;
  while (pos < clean.len) {
    size_t piece = 1 + (seed = seed * 1103515245u + 12345u) % 64;
    if (piece > clean.len - pos) piece = clean.len - pos;
    CHECK(message_collect_feed(&c, clean.s + pos, piece));
    pos += piece;
    CHECK(c.line.len <= HDRS_MAX + 2 && c.field.len <= HDRS_MAX && c.hdrs.len <= HDRS_MAX + 4096);
  }
  CHECK(message_collect_end(&c));
  CHECK(c.body.len <= BODY_MAX && c.body.len <= c.bodysize && c.bodysize <= clean.len);
  size_t hp = 0, flen, total = 0;
  const char *f;
  int r;
  while ((r = netstring_next(c.hdrs.s, c.hdrs.len, &hp, &f, &flen)) == 1) {
    CHECK(flen > 0 && memchr(f, ':', flen) && f[0] != ' ' && f[0] != '\t');
    total += flen;
  }
  CHECK(r == 0 && total <= HDRS_MAX);
  return 0;
}
