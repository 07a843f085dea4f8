#include "databytes.h"
#include "scan.h"
#include <stdlib.h>

unsigned long databytes_limit(void)
{
  const char *s = getenv("IDCHECK_DATABYTES");
  unsigned long v;
  if (!s || !*s || s[scan_ulong(s, &v)] || !v) return DATABYTES_DEFAULT;
  return v;
}
