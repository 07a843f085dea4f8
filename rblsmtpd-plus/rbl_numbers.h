/* Numbers in and out. In, from the command line, read one way: a whole
 * string of decimal digits, nothing before or after, within range; else 0
 * (a usage error). Out, decimal digits appended to a stralloc. */
#ifndef RBL_NUMBERS_H
#define RBL_NUMBERS_H
#include <stdint.h>
#include "stralloc.h"

/* 0..max (libowfat's scan_ulong) */
int rbl_scan_ulong(const char *s, unsigned long max, unsigned long *out);

/* Seconds with up to three decimals, at most a day: "5", "0.25" ->
 * milliseconds (libowfat has no decimal fractions) */
int rbl_scan_seconds(const char *s, int64_t *ms);

/* libowfat's fmt_ulong appended; 0 out of memory */
int rbl_cat_ulong(stralloc *sa, unsigned long v);

#endif
