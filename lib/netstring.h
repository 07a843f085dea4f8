/* djb's netstrings: "len:bytes,". Used for the policy wire format. */
#ifndef NETSTRING_H
#define NETSTRING_H
#include <stddef.h>
#include "stralloc.h"

int netstring_catb(stralloc *out, const char *s, size_t len);
int netstring_cats(stralloc *out, const char *s);
/* Start a netstring whose contents are appended later; netstring_close
 * fixes its length. The mark is what netstring_open returned. */
size_t netstring_open(stralloc *out);
int netstring_close(stralloc *out, size_t mark);

/* Next netstring in buf[*pos..len): 1 found (field, flen set, *pos moved),
 * 0 at the end, -1 malformed. */
int netstring_next(const char *buf, size_t len, size_t *pos,
                   const char **field, size_t *flen);

/* How long the first frame in buf is, if it is complete: >0 total bytes,
 * 0 need more, -1 malformed or longer than max. */
long netstring_frame(const char *buf, size_t len, size_t max);

#endif
