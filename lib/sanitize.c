#include "sanitize.h"
#include <string.h>

int sanitize_catb(stralloc *out, const char *s, size_t len, size_t max)
{
  if (len > max) len = max;
  if (!stralloc_readyplus(out, len)) return 0;
  for (size_t i = 0; i < len; ++i) {
    unsigned char c = (unsigned char)s[i];
    out->s[out->len++] = (c >= 32 && c <= 126) ? (char)c : '?';
  }
  return 1;
}

int sanitize_cats(stralloc *out, const char *s, size_t max)
{
  if (!s) return stralloc_cats(out, "-");
  return sanitize_catb(out, s, strlen(s), max);
}
