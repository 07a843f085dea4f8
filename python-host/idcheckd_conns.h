/* qmail-idcheckd's connections: the listening socket, every session's
 * connection from accept to close, whom it serves (its client, from the
 * hello), and the queue of those with a request waiting for a worker.
 * Knows nothing of workers: the pool (idcheckd_pool.h) takes from the queue
 * and marks a connection C_BUSY while a worker serves it. */
#ifndef IDCHECKD_CONNS_H
#define IDCHECKD_CONNS_H
#include <stdint.h>
#include <sys/types.h>
#include "ip6.h"

/* Whom a connection serves, from its hello: an IPv4 address (as ::ffff:a.b.c.d)
 * or an IPv6 /64, the block one site usually has. Unknown: the session
 * is a client of its own. */
struct client {
  int known;
  char key[16];
};
int client_same(const struct client *a, const struct client *b);
#define CLIENT_TEXT (IP6_FMT + 8)
/* For the log: 192.0.2.7, 2001:db8:1:2::/64, into buf (CLIENT_TEXT bytes). */
const char *client_text(const struct client *cl, char *buf);

enum cstate {
  C_FREE,
  C_HELLO,      /* accepted, its hello not read yet */
  C_IDLE,       /* between calls */
  C_QUEUED,     /* a request waits for a worker */
  C_BUSY        /* a worker serves it */
};
struct conn {
  enum cstate state;
  int fd;
  pid_t peer;                   /* the session's pid (SO_PEERCRED at accept) */
  int64_t last;                 /* C_HELLO: accepted; C_IDLE: its last call ended */
  struct client client;
  int worker;                   /* C_BUSY: the worker serving it */
  int qprev, qnext;             /* C_QUEUED: the wait queue, in order of arrival */
  int held;                     /* logged that it waited for its client: once a session */
  int hung_up;                  /* C_BUSY: the session hung up mid-call (seen) */
  int open_pos;                 /* its place in open_conns */
  uint32_t watching;            /* its events in the master's wait (idcheckd_events.h) */
};

extern int maxconns;            /* -c */
extern int64_t idle_ms;         /* -i: an idle connection is closed after this */
extern struct conn *conns;      /* maxconns slots */
extern int *open_conns;         /* the open ones, dense: loops cost what is open */
extern int nconns;
extern int qhead;               /* the first connection with a request waiting, -1 none */

/* The slots, once maxconns is known: 1 ok, 0 out of memory. */
int conns_alloc(void);

/* Listens on path (a stale socket of a server gone is replaced; another
 * server's, or a file not a socket, is fatal). */
void listen_on(const char *path);
/* Stops listening and removes the socket, if it is still ours. */
void unlisten(void);
/* Watches the listening socket while it takes connections (not stopped,
 * not full, not resting after running out of descriptors: *wake lowered
 * to then). */
void listen_watch(int64_t now, int64_t *wake);
/* Watches each connection for what its state waits for: a request or the
 * session's end (C_IDLE), its hello (C_HELLO), a hang-up (C_QUEUED,
 * C_BUSY), nothing once a hang-up mid-call was seen. */
void conns_watch(void);
/* Accepts what waits, as far as there is room. */
void accept_some(void);

void hello_read(int c);         /* C_HELLO and readable: its hello */
void queue_push(int c);         /* C_IDLE and readable: its request waits */
void queue_unlink(int c);       /* a worker took it, or it closes */
void conn_close(int c);
/* Closes what sat too long: a connection without its hello, an idle one.
 * The earliest such deadline still to come lowers *wake. */
void conns_expire(int64_t now, int64_t *wake);

#endif
