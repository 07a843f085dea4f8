/* SMTP argument parsing shared by the proxy and the qmail-smtpd stand-in. */
#ifndef SMTP_ADDR_H
#define SMTP_ADDR_H
#include <stddef.h>
#include "stralloc.h"

/* The address in a MAIL or RCPT argument, read as qmail-smtpd reads it: between
 * the first '<' and the next unquoted '>', else after ':' up to a space;
 * backslash escapes and double quotes removed; a source route dropped.
 * 0 when it is 900 bytes or longer (qmail-smtpd's 555). */
int smtp_addr_parse(const char *arg, size_t len, stralloc *addr);

/* RFC 5321 Domain: sub-domain *("." sub-domain), letters, digits, inner
 * hyphens, labels of 63 bytes at most, 253 in all; no address literals. */
int smtp_domain_valid(const char *s, size_t len);

#endif
