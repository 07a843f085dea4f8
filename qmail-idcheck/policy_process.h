/* checkID in a qmail-idcheck-python process of the session's own
 * (policy_process.c): policy_call's and policy_end's contract (policy.h). */
#ifndef POLICY_PROCESS_H
#define POLICY_PROCESS_H
#include "deadline.h"
#include "stralloc.h"

int policy_process_call(const stralloc *request, stralloc *reply, deadline_t deadline,
                        stralloc *why);
void policy_process_end(void);

#endif
