/* The queue channel: how qmail-idcheck-queue gets this message's verdict
 * from qmail-idcheck. Both halves live here.
 *
 * A SOCK_SEQPACKET socketpair the proxy makes before it starts prog; the far
 * end is dup'ed above 6 (notqmail moves its error pipe to 6 in the queue child
 * and leaves every other descriptor open), named in IDCHECK_CHANNEL, and
 * inherited by qmail-smtpd and every queue program it runs. Every other
 * descriptor of the proxy is close-on-exec; the proxy closes its copy of the
 * far end once prog runs, so EOF on its end means every far end is gone.
 *
 *   wrapper -> proxy   one datagram: netstring "ask", netstring <its pid>
 *   proxy -> wrapper   one datagram: netstring <that pid>, then either a
 *                      netstring holding a reply frame (lib/policy_wire.h)
 *                      or netstring "none"
 *
 * The wrapper asks only at its descriptor 0's EOF, which qmail-smtpd gives it
 * only after the client's final dot. The proxy forwards that dot only once
 * this message's verdict is fixed, answers with a verdict only between the dot
 * and prog's reply to it, hands it out once, and answers "none" to a question
 * that arrived before the dot. qmail-smtpd waits for its queue program before
 * it replies, so in that window the one wrapper that can ask is this
 * message's: a verdict can never reach another message's wrapper. A wrapper
 * that gets "none", nothing in time, or an unusable channel queues nothing.
 *
 * The spool limit is part of the contract: the proxy refuses a message of
 * more than IDCHECK_DATABYTES bytes as sent (CRLF, dot-stuffed) with 552, and
 * the wrapper keeps at most that plus QUEUE_SPOOL_SLACK (qmail-smtpd's
 * Received line; LF line ends never make the message longer), so the wrapper
 * never drops a message the proxy accepted. */
#ifndef QUEUE_CHANNEL_H
#define QUEUE_CHANNEL_H
#include "deadline.h"
#include "policy_wire.h"
#include "stralloc.h"

#define QUEUE_DATABYTES_DEFAULT 52428800UL   /* 50 MiB */
#define QUEUE_SPOOL_SLACK 65536UL
unsigned long queue_databytes(void);         /* IDCHECK_DATABYTES or the default */

/* ---- the proxy's half ---- */

/* Makes the pair and sets IDCHECK_CHANNEL for prog: 1 ok, 0 failed. */
int queue_channel_make(void);
/* After prog started: the proxy keeps only its own end. */
void queue_channel_keep_own_end(void);
int queue_channel_fd(void);                  /* the proxy's end, -1 closed */
/* Answers one question. verdict: the one to hand out, or 0 for "none";
 * *taken set when it went out. The channel is closed at EOF or an error. */
void queue_channel_answer(const struct policy_verdict *verdict, int *taken);
/* Answers "none" to questions asked before the dot (a bounded number). */
void queue_channel_drain_stale(void);

/* ---- the wrapper's half ---- */

/* IDCHECK_CHANNEL's descriptor if it is the proxy's SEQPACKET socket above
 * 6 (made close-on-exec), else -1. */
int queue_channel_open(const char *value);
/* Asks for the verdict: 1 with v filled; 0 none for us (why says so). */
int queue_channel_ask(int fd, const char *pid, struct policy_verdict *v,
                      deadline_t deadline, const char **why);

#endif
