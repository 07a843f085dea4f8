/* Numbers from the environment, the one way every program reads them:
 * decimal digits only (libowfat's scan_ulong), within [min, max]; anything
 * else (unset, empty, a sign, trailing bytes, overflow, out of range) gives
 * the fallback, so a typo in a tcprules line never means 0 or a huge value. */
#ifndef ENV_NUMBER_H
#define ENV_NUMBER_H

unsigned long env_ulong(const char *name, unsigned long fallback,
                        unsigned long min, unsigned long max);

/* Whole seconds in [1, 86400] as milliseconds, else fallback_ms. */
long long env_seconds_ms(const char *name, long long fallback_ms);

#endif
