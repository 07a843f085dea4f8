#include "ehlo_rewrite.h"
#include "netstring.h"
#include <string.h>
#include <strings.h>

static int carried(const char *t, size_t tlen)
{
  static const char *const dropped[] = { "STARTTLS", "CHUNKING", "BINARYMIME", 0 };
  size_t w = 0;
  while (w < tlen && t[w] != ' ') ++w;
  for (const char *const *d = dropped; *d; ++d)
    if (w == strlen(*d) && !strncasecmp(t, *d, w)) return 0;
  return 1;
}

static int line_add(stralloc *out, int last, const char *t, size_t tlen)
{
  return stralloc_cats(out, last ? "250 " : "250-") && stralloc_catb(out, t, tlen)
      && stralloc_catb(out, "\r\n", 2);
}

int ehlo_rewrite(stralloc *reply, const char *keyword, const char *const *extra)
{
  static stralloc texts, rebuilt;
  size_t n = 0, pos = 0;
  texts.len = 0;
  /* each line's text after "250-"/"250 ", kept as netstrings */
  while (pos < reply->len) {
    const char *l = reply->s + pos;
    const char *e = memchr(l, '\n', reply->len - pos);
    if (!e) break;
    size_t len = (size_t)(e - l) - 1;   /* without CRLF */
    pos = (size_t)(e - reply->s) + 1;
    const char *t = l + 4;
    size_t tlen = len > 4 ? len - 4 : 0;
    if (n > 0 && !carried(t, tlen)) continue;
    if (!netstring_catb(&texts, t, tlen)) return 0;
    ++n;
  }
  /* texts[0..n-2], keyword, extras, texts[n-1]; or texts[0], keyword, extras */
  size_t tp = 0, i = 0;
  const char *f;
  size_t fl;
  rebuilt.len = 0;
  while (netstring_next(texts.s, texts.len, &tp, &f, &fl) == 1) {
    int last = (i == n - 1);
    if (last && n > 1) {
      if (!line_add(&rebuilt, 0, keyword, strlen(keyword))) return 0;
      for (const char *const *x = extra; x && *x; ++x)
        if (!line_add(&rebuilt, 0, *x, strlen(*x))) return 0;
    }
    if (!line_add(&rebuilt, last && n > 1, f, fl)) return 0;
    ++i;
  }
  if (n == 1) {
    const char *const *x = extra;
    int more = x && *x;
    if (!line_add(&rebuilt, !more, keyword, strlen(keyword))) return 0;
    for (; x && *x; ++x)
      if (!line_add(&rebuilt, !x[1], *x, strlen(*x))) return 0;
  }
  return stralloc_copy(reply, &rebuilt);
}
