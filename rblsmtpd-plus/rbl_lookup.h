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

/* The answer to a query of qtype (DNS_T_A or DNS_T_TXT) in packet, as
 * received: for A the IN A addresses, 4 bytes each, sorted; for TXT the IN
 * TXT strings joined, bytes outside 32..126 as '?' (libowfat's
 * dns_ip4_packet and dns_txt_packet). 0, or -1 (result empty) when the
 * packet is malformed -- lib/dns_answer finds a record past its end, or an
 * IN A record is not 4 bytes, or an IN TXT record's strings do not fit it
 * exactly -- or memory ran out. No I/O: tests/fuzz/fuzz_rbl_answer.c. */
int rbl_answer_read(const char qtype[2], const char *packet, unsigned int len, stralloc *result);

#endif
