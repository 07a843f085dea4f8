#include "netstring.h"
#include <stdio.h>
#include <string.h>

int netstring_catb(stralloc *out, const char *s, size_t len)
{
  char num[24];
  int n = snprintf(num, sizeof num, "%zu:", len);
  return stralloc_catb(out, num, (size_t)n) && stralloc_catb(out, s, len)
      && stralloc_catb(out, ",", 1);
}

int netstring_cats(stralloc *out, const char *s)
{
  return netstring_catb(out, s, strlen(s));
}

/* A fixed-width length field keeps open/close simple: 10 digits, zero-padded,
 * is still a valid netstring length ("0000000012:"). */
#define OPEN_WIDTH 10

size_t netstring_open(stralloc *out)
{
  size_t mark = out->len;
  if (!stralloc_catb(out, "0000000000:", OPEN_WIDTH + 1)) return (size_t)-1;
  return mark;
}

int netstring_close(stralloc *out, size_t mark)
{
  if (mark == (size_t)-1 || mark + OPEN_WIDTH + 1 > out->len) return 0;
  size_t len = out->len - mark - OPEN_WIDTH - 1;
  if (len > 9999999999UL) return 0;
  char num[OPEN_WIDTH + 1];
  snprintf(num, sizeof num, "%010zu", len);
  memcpy(out->s + mark, num, OPEN_WIDTH);
  return stralloc_catb(out, ",", 1);
}

static int length_parse(const char *buf, size_t len, size_t *pos, size_t *value)
{
  size_t v = 0, i = *pos, digits = 0;
  while (i < len && buf[i] >= '0' && buf[i] <= '9') {
    if (++digits > 10) return -1;
    v = v * 10 + (size_t)(buf[i] - '0');
    ++i;
  }
  if (i == len) return 0;
  if (!digits || buf[i] != ':') return -1;
  *value = v;
  *pos = i + 1;
  return 1;
}

int netstring_next(const char *buf, size_t len, size_t *pos,
                   const char **field, size_t *flen)
{
  size_t i = *pos, n;
  if (i >= len) return 0;
  if (length_parse(buf, len, &i, &n) != 1) return -1;
  if (n > len - i || len - i - n < 1 || buf[i + n] != ',') return -1;
  *field = buf + i;
  *flen = n;
  *pos = i + n + 1;
  return 1;
}

long netstring_frame(const char *buf, size_t len, size_t max)
{
  size_t i = 0, n;
  int r = length_parse(buf, len, &i, &n);
  if (r <= 0) return r;
  if (n > max) return -1;
  if (len - i < n + 1) return 0;
  if (buf[i + n] != ',') return -1;
  return (long)(i + n + 1);
}
