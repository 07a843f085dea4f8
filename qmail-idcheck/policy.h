/* How a checkID call travels. The proxy builds a request frame (see
 * lib/policy_wire.h) and gets the reply frame's contents back; where Python
 * runs (a per-session qmail-idcheck-python process, or a warm server) is
 * this interface's business only. */
#ifndef POLICY_H
#define POLICY_H
#include "deadline.h"
#include "stralloc.h"

/* 1: reply holds the reply frame's contents. 0: no verdict; why says what
 * went wrong (timeout, the policy process died, a malformed frame). */
int policy_call(const stralloc *request, stralloc *reply, deadline_t deadline,
                stralloc *why);

/* The session is over: stop whatever runs the policy, without waiting on it. */
void policy_end(void);

#endif
