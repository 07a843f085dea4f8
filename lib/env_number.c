#include "env_number.h"
#include "scan.h"
#include <stdlib.h>

unsigned long env_ulong(const char *name, unsigned long fallback,
                        unsigned long min, unsigned long max)
{
  const char *s = getenv(name);
  unsigned long v;
  if (!s || !*s) return fallback;
  size_t n = scan_ulong(s, &v);
  if (!n || s[n] || v < min || v > max) return fallback;
  return v;
}

long long env_seconds_ms(const char *name, long long fallback_ms)
{
  unsigned long v = env_ulong(name, 0, 1, 86400);
  return v ? (long long)v * 1000 : fallback_ms;
}
