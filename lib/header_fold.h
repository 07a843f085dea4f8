/* A header field for the queue: "Label: text", folded at white space so lines
 * stay within 78 bytes where the words allow and never pass 998 (RFC 5322),
 * each line ended by LF as qmail-queue expects. */
#ifndef HEADER_FOLD_H
#define HEADER_FOLD_H
#include <stddef.h>
#include "stralloc.h"

/* Checks for callers that take labels and texts from a policy. */
int header_label_valid(const char *s, size_t len);   /* field name, colon optional */
int header_text_valid(const char *s, size_t len);    /* no control bytes but TAB */

/* Appends the folded field to out: 1 ok, 0 when it cannot be made legal
 * (invalid label or text, or a word too long for 998 bytes). */
int header_fold(stralloc *out, const char *label, size_t llen,
                const char *text, size_t tlen);

#endif
