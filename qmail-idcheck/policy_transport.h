/* The two ways a checkID call travels (policy.c picks one per session):
 *   process: a qmail-idcheck-python of this session's own (policy_process.c)
 *   server:  a connection to qmail-idcheckd, IDCHECK_SERVER (policy_server.c)
 * Both have policy_call's and policy_end's contract (policy.h). */
#ifndef POLICY_TRANSPORT_H
#define POLICY_TRANSPORT_H
#include "deadline.h"
#include "stralloc.h"

/* One reply frame from fd, its contents copied to reply. One request gets
 * exactly one reply: bytes beyond the frame are FRAME_EXTRA. buf is the
 * transport's read buffer. */
enum frame_status {
  FRAME_OK, FRAME_MALFORMED, FRAME_EXTRA, FRAME_EOF, FRAME_TIMEOUT, FRAME_ERROR, FRAME_NOMEM
};
enum frame_status policy_frame_read(int fd, stralloc *buf, stralloc *reply, deadline_t deadline);

int policy_process_call(const stralloc *request, stralloc *reply, deadline_t deadline,
                        stralloc *why);
void policy_process_end(void);

/* policy_call's contract, and SERVER_DOWN: the server cannot be reached
 * (its socket is missing, or nobody listens on it) and never saw this
 * request; why says so. */
#define SERVER_DOWN (-1)
int policy_server_call(const char *path, const stralloc *request, stralloc *reply,
                       deadline_t deadline, stralloc *why);
void policy_server_end(void);

#endif
