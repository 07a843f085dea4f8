/* The two ways a checkID call travels (policy.c picks one per session):
 *   process: a qmail-idcheck-python of this session's own (policy_process.c)
 *   server:  a connection to qmail-idcheckd, IDCHECK_SERVER (policy_server.c)
 * Both have policy_call's and policy_end's contract (policy.h). */
#ifndef POLICY_TRANSPORT_H
#define POLICY_TRANSPORT_H
#include "deadline.h"
#include "stralloc.h"

int policy_process_call(const stralloc *request, stralloc *reply, deadline_t deadline,
                        stralloc *why);
void policy_process_end(void);

int policy_server_call(const char *path, const stralloc *request, stralloc *reply,
                       deadline_t deadline, stralloc *why);
void policy_server_end(void);

#endif
