/* qmail-idcheckd's workers: the process that runs checkID, and its channel
 * to the master, both halves.
 *
 * The channel is a SOCK_SEQPACKET socketpair, one per worker:
 *   master -> worker   a connection with a call waiting: the descriptor as
 *                      SCM_RIGHTS, beside it the session's pid (SO_PEERCRED,
 *                      for the policy's log lines); EOF: stop
 *   worker -> master   one status byte: WORKER_READY once the policy is
 *                      loaded, then WORKER_KEEP or WORKER_DROP after each call
 *                      (the connection stays for the session's next call, or
 *                      is closed) */
#ifndef IDCHECKD_WORKER_H
#define IDCHECKD_WORKER_H
#include <sys/types.h>

#define IO_LIMIT_MS 10000   /* a worker's read of one request, write of one reply;
                               a new connection's wait for its hello */

#define WORKER_READY 'R'
#define WORKER_KEEP 'k'
#define WORKER_DROP 'x'

/* The worker process, on its end of the channel: starts Python, loads the
 * policy, then serves one call per connection it is given until EOF. */
void worker_main(int ctl) __attribute__((noreturn));

/* The master's half. Hands connection fd (of session pid) to the worker:
 * 1 sent, 0 not (the worker is gone or stuck). */
int worker_give_fd(int ctl, int fd, pid_t session);
/* The worker's news: 1 a status byte in *news, 0 none yet, -1 the channel
 * closed or failed (the worker is dying). */
int worker_news(int ctl, char *news);

#endif
