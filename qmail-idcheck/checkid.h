/* Asking checkID: the request built from what the session knows (the wire
 * format is lib/policy_wire.h; policy.h carries it to Python), the verdict
 * checked for meaning (lib/verdict.h), the fault policy applied, and the
 * decision logged. A check returns the refusal or nothing. */
#ifndef CHECKID_H
#define CHECKID_H
#include "message_collect.h"
#include "policy_wire.h"
#include "stralloc.h"

struct checkid_call {
  const char *stage;               /* "mail", "rcpt" or "data": the log's word */
  int nargs;                       /* 4 at MAIL, 5 at RCPT, 7 at end of data */
  const stralloc *sender;
  const stralloc *rcpt;            /* at RCPT: this one (RCPT TO:<> is empty) */
  const struct message_collect *message;   /* at end of data */
};

enum outcome { GO_ON, REFUSED };

/* One decision. GO_ON: the command goes on, and verdict is what to apply if
 * prog accepts it. REFUSED: refusal is the client's reply, and verdict a
 * REJECT or TEMPFAIL (a fault under IDCHECK_ONERROR=tempfail is one). A fault
 * under IDCHECK_ONERROR=accept is CONTINUE: never final. */
enum outcome checkid_decide(const struct checkid_call *c, struct policy_verdict *verdict,
                            stralloc *refusal);

/* qmail-idcheck: pid N IP ID HELO MAIL stage[:rcpt] action [code [xcode]] text */
void decision_log(const struct checkid_call *c, const char *action, int code,
                  const stralloc *xcode, const stralloc *text);

#endif
