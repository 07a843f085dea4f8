#include "session.h"
#include "session_end.h"
#include "verdict.h"

struct session session;

void txn_clear(void)
{
  struct transaction *t = &session.txn;
  t->active = 0;
  t->sender.len = t->rcpts.len = 0;
  t->nrcpts = 0;
  verdict_reset(&t->applied);
}

void session_greeted(const stralloc *helo)
{
  if (!stralloc_copy(&session.helo, helo)) die_nomem();
  session.have_helo = 1;
  session.have_id = 0;
  session.id.len = 0;
  txn_clear();
}
