/* What the proxy knows of the session: HELO and ID belong to the session
 * (HELO/EHLO clear ID, RSET does not), the rest to the current transaction,
 * which begins and ends together on both sides: when prog accepts MAIL, and
 * when prog accepts RSET, HELO or EHLO, or ends it at the final dot. */
#ifndef SESSION_H
#define SESSION_H
#include "policy_wire.h"
#include "stralloc.h"

struct transaction {
  int active;                     /* prog accepted MAIL */
  stralloc sender;
  stralloc rcpts;                 /* netstrings: the accepted recipients */
  unsigned long nrcpts;           /* how many (one more once the cap was logged) */
  struct policy_verdict applied;  /* the verdict in force, with its headers;
                                     ACT_NONE: not asked, CONTINUE: ask again */
};

struct session {
  stralloc helo, id;
  int have_helo, have_id;
  int skip_policy;                /* from the start, or after a successful AUTH */
  int authenticated;              /* prog said 235 to AUTH: it cannot forget it */
  int tls_restarted;              /* STARTTLS done: MAIL waits for a new HELO/EHLO */
  struct transaction txn;
};
extern struct session session;

void txn_clear(void);
void session_greeted(const stralloc *helo);   /* HELO/EHLO accepted by prog */

#endif
