/* prog's EHLO reply as the client must see it: the extension's keyword
 * inserted before the last line, and the keywords of extensions the proxy
 * cannot carry removed from prog's lines: STARTTLS (the proxy cannot see
 * inside prog's TLS; it may offer its own), CHUNKING and BINARYMIME (BDAT has
 * no end-of-data line to check). The greeting line (the first) is kept. */
#ifndef EHLO_REWRITE_H
#define EHLO_REWRITE_H
#include "stralloc.h"

/* reply: whole, CRLF-ended lines "250-..." / "250 ...". extra: keywords
 * to add after ours (e.g. "STARTTLS"), or 0. 1 ok, 0 out of memory. */
int ehlo_rewrite(stralloc *reply, const char *keyword, const char *const *extra);

#endif
