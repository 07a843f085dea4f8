/* Untrusted text on its way to a reply or a log: bytes outside 32..126
 * become '?', and the result is cut at max bytes (as rblsmtpd does). */
#ifndef SANITIZE_H
#define SANITIZE_H
#include <stddef.h>
#include "stralloc.h"

int sanitize_catb(stralloc *out, const char *s, size_t len, size_t max);
int sanitize_cats(stralloc *out, const char *s, size_t max);  /* NULL: "-" */

#endif
