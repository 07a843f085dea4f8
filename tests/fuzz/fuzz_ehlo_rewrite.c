/* The EHLO rewrite on any multi-line reply prog could send: the result is a
 * well-formed reply (every line "250-" but the last "250 "), the greeting
 * line unchanged, our keyword once, the extras after it, and none of the
 * extensions the proxy cannot carry left from prog. */
#include "fuzz.h"
#include "ehlo_rewrite.h"
#include <string.h>
#include <strings.h>

static int dropped(const char *t, size_t len)
{
  static const char *const names[] = { "STARTTLS", "CHUNKING", "BINARYMIME", 0 };
  size_t w = 0;
  while (w < len && t[w] != ' ') ++w;
  for (const char *const *d = names; *d; ++d)
    if (w == strlen(*d) && !strncasecmp(t, *d, w)) return 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static stralloc reply;
  if (size < 1) return 0;
  int with_tls = data[0] & 1;
  /* lines of text from the input: LF separates, CR and LF never inside */
  reply.len = 0;
  size_t nlines = 0, i = 1;
  while (i <= size) {
    size_t j = i;
    while (j < size && data[j] != '\n') ++j;
    int last = j >= size;
    stralloc_cats(&reply, last ? "250 " : "250-");
    for (size_t k = i; k < j; ++k) {
      char c = data[k] == '\r' ? ' ' : (char)data[k];
      stralloc_catb(&reply, &c, 1);
    }
    stralloc_cats(&reply, "\r\n");
    ++nlines;
    i = j + 1;
  }
  stralloc first = { 0 };
  const char *e = memchr(reply.s, '\n', reply.len);
  stralloc_copyb(&first, reply.s + 4, (size_t)(e - reply.s) - 5);
  const char *extra[] = { "STARTTLS", 0 };
  CHECK(ehlo_rewrite(&reply, "ID", with_tls ? extra : 0));

  size_t pos = 0, n = 0, ids = 0, tls = 0;
  while (pos < reply.len) {
    const char *l = reply.s + pos;
    const char *lf = memchr(l, '\n', reply.len - pos);
    CHECK(lf && lf > l && lf[-1] == '\r');
    size_t len = (size_t)(lf - l) - 1;
    pos = (size_t)(lf - reply.s) + 1;
    int last = pos == reply.len;
    CHECK(len >= 4 && !memcmp(l, last ? "250 " : "250-", 4));
    CHECK(!memchr(l, '\r', len) && !memchr(l, '\n', len));
    const char *t = l + 4;
    size_t tlen = len - 4;
    if (n == 0) CHECK(tlen == first.len && !memcmp(t, first.s, tlen));
    else if (tlen == 2 && !memcmp(t, "ID", 2)) ++ids;
    else if (tlen == 8 && !memcmp(t, "STARTTLS", 8) && with_tls) ++tls;
    else CHECK(!dropped(t, tlen));
    ++n;
  }
  CHECK(n >= 2 && ids >= 1 && tls == (size_t)with_tls);
  stralloc_free(&first);
  return 0;
}
