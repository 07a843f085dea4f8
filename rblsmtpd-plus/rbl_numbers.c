#include "rbl_numbers.h"
#include "fmt.h"
#include "scan.h"

int rbl_scan_ulong(const char *s, unsigned long max, unsigned long *out)
{
  unsigned long v;
  size_t n = scan_ulong(s, &v);   /* stops before an overflow: s[n] is left */
  if (!n || s[n] || v > max) return 0;
  *out = v;
  return 1;
}

int rbl_scan_seconds(const char *s, int64_t *ms)
{
  int64_t v = 0, scale = 1000;
  const char *p = s;
  if (!*p) return 0;
  for (; *p >= '0' && *p <= '9'; ++p) {
    v = v * 10 + (*p - '0');
    if (v > 86400) return 0;
  }
  v *= 1000;
  if (*p == '.') {
    ++p;
    if (!*p) return 0;
    for (; *p >= '0' && *p <= '9'; ++p) {
      scale /= 10;
      if (!scale) return 0;
      v += (*p - '0') * scale;
    }
  }
  if (*p || p == s) return 0;
  *ms = v;
  return 1;
}

/* Not stralloc_catulong0: in Debian's libowfat 0.32 it appends no digits.
 * fmt.h declares fmt_ulong pure (no writes), so the call in fmt_ulong0,
 * its result unused, was compiled away. Called here for its result, its
 * writes land in the stralloc, which only other functions read. */
int rbl_cat_ulong(stralloc *sa, unsigned long v)
{
  if (!stralloc_readyplus(sa, FMT_ULONG)) return 0;
  sa->len += fmt_ulong(sa->s + sa->len, v);
  return 1;
}
