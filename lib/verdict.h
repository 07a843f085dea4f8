/* A checkID verdict (struct policy_verdict, lib/policy_wire.h) once it is
 * decoded: whether it means something, the SMTP reply it makes, and copies.
 * The proxy checks every verdict here when checkID returns it; the queue
 * wrapper writes its headers with the same header_fold, so what passes here
 * it can always write. */
#ifndef VERDICT_H
#define VERDICT_H
#include "policy_wire.h"
#include "stralloc.h"

#define VERDICT_TEXT_MAX 400          /* reply text bytes that reach a client */
#define VERDICT_HEADERS_MAX 100
#define VERDICT_HEADER_BYTES_MAX 65536  /* all headers: one channel datagram */
#define VERDICT_EDITS_MAX 500

/* 1 usable; 0 a fault, with the reason in why (a FAULT verdict's own text,
 * or what is wrong). Cuts the text to VERDICT_TEXT_MAX bytes first. -1 out
 * of memory. */
int verdict_check(struct policy_verdict *v, stralloc *why);

/* ACCEPT, FILTER and DISCARD end the asking for this message. */
int verdict_is_final(enum policy_action a);

/* "code[ xcode] text\r\n", text sanitized: 1 ok, 0 out of memory. */
int verdict_reply(const struct policy_verdict *v, stralloc *out);

void verdict_reset(struct policy_verdict *v);
int verdict_copy(struct policy_verdict *to, const struct policy_verdict *from);  /* 0: nomem */

#endif
