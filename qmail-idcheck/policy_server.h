/* checkID through a warm qmail-idcheckd, IDCHECK_SERVER (policy_server.c):
 * policy_call's and policy_end's contract (policy.h), and SERVER_DOWN: the
 * server cannot be reached (its socket is missing, or nobody listens on it)
 * and never saw this request; why says so. */
#ifndef POLICY_SERVER_H
#define POLICY_SERVER_H
#include "deadline.h"
#include "stralloc.h"

#define SERVER_DOWN (-1)
int policy_server_call(const char *path, const stralloc *request, stralloc *reply,
                       deadline_t deadline, stralloc *why);
void policy_server_end(void);

#endif
