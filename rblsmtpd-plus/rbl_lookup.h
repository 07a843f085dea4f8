/* DNS lookups run side by side (libowfat dns_transmit_* + iopause) under
 * one deadline: an unanswering server costs at most that deadline. */
#ifndef RBL_LOOKUP_H
#define RBL_LOOKUP_H
#include "dns.h"
#include "stralloc.h"
#include "deadline.h"

enum rbl_state { RBL_Q_IDLE, RBL_Q_RUNNING, RBL_Q_ANSWERED, RBL_Q_FAILED };

struct rbl_query {
  struct dns_transmit tx;
  enum rbl_state state;
  int timedout;          /* FAILED because the deadline came first */
  char qtype[2];
  stralloc result;       /* A: 4 bytes per address; TXT: the text */
};


/* servers: 256 bytes as dns_resolvconfip() gives (DNSCACHEIP or
 * /etc/resolv.conf). name in dot form. A start that fails leaves the
 * query FAILED. */
void rbl_query_start(struct rbl_query *q, const char servers[256],
                     const char *name, unsigned int len, const char qtype[2]);

/* Waits for the RUNNING queries until each is answered or failed, until
 * the deadline (the rest become FAILED with timedout set), or until
 * enough(ctx) returns nonzero (the rest are stopped and left IDLE). */
void rbl_query_run(struct rbl_query *q[], unsigned int n, deadline_t deadline,
                   int (*enough)(void *), void *ctx);

void rbl_query_stop(struct rbl_query *q);

#endif
