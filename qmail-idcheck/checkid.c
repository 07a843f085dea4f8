#include "checkid.h"
#include "deadline.h"
#include "fmt.h"
#include "scan.h"
#include "netstring.h"
#include "policy.h"
#include "sanitize.h"
#include "session.h"
#include "session_end.h"
#include "settings.h"
#include "tls.h"
#include "verdict.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static stralloc request, answer, why, logline;

static void field(const char *s, size_t len, int present)
{
  if (present && len) sanitize_catb(&logline, s, len, 200);
  else stralloc_cats(&logline, "-");
  stralloc_cats(&logline, " ");
}

void decision_log(const struct checkid_call *c, const char *action, int code,
                  const stralloc *xcode, const stralloc *text)
{
  char num[40];
  const char *ip = settings.remote_ip;
  snprintf(num, sizeof num, "qmail-idcheck: pid %d ", (int)getpid());
  stralloc_copys(&logline, num);
  field(ip, ip ? strlen(ip) : 0, ip != 0);
  field(session.id.s, session.id.len, session.have_id);
  field(session.helo.s, session.helo.len, session.have_helo);
  field(c->sender->s, c->sender->len, 1);
  stralloc_cats(&logline, c->stage);
  if (tls_active()) stralloc_cats(&logline, "/tls");
  if (c->rcpt) {
    stralloc_cats(&logline, ":");
    sanitize_catb(&logline, c->rcpt->s, c->rcpt->len, 200);
  }
  stralloc_cats(&logline, " ");
  stralloc_cats(&logline, action);
  if (code) {
    snprintf(num, sizeof num, " %d", code);
    stralloc_cats(&logline, num);
  }
  if (xcode && xcode->len) { stralloc_cats(&logline, " "); sanitize_catb(&logline, xcode->s, xcode->len, 16); }
  if (text->len) { stralloc_cats(&logline, " "); sanitize_catb(&logline, text->s, text->len, 400); }
  if (stralloc_cats(&logline, "\n") && write(2, logline.s, logline.len) < 0) {}
}

/* The request frame for this call (lib/policy_wire.h): 1 ok, 0 nomem. */
static int request_build(const struct checkid_call *c)
{
  const char *ip = settings.remote_ip;
  const struct message_collect *m = c->message;
  size_t frame, mark;
  char size[24], cut[24];
  request.len = 0;
  snprintf(size, sizeof size, "%zu", m ? m->bodysize : 0);
  snprintf(cut, sizeof cut, "%zu", m ? m->hdrscut : 0);
  if (!wire_request_begin(&request, &frame, c->nargs)
      || !wire_put_opt(&request, ip, ip ? strlen(ip) : 0, ip != 0)
      || !wire_put_opt(&request, session.id.s, session.id.len, session.have_id)
      || !wire_put_opt(&request, session.helo.s, session.helo.len, session.have_helo)
      || !wire_put_opt(&request, c->sender->s, c->sender->len, 1))
    return 0;
  /* R: the accepted recipients, and this one last */
  mark = netstring_open(&request);
  if ((c->nargs > 4 && !stralloc_cat(&request, &session.txn.rcpts))
      || (c->rcpt && !netstring_catb(&request, c->rcpt->s, c->rcpt->len))
      || !netstring_close(&request, mark))
    return 0;
  if (!netstring_catb(&request, m ? m->hdrs.s : 0, m ? m->hdrs.len : 0)
      || !wire_put_opt(&request, m ? m->body.s : 0, m ? m->body.len : 0, m != 0)
      || !netstring_cats(&request, size))
    return 0;
  /* the connection's environment, for idcheck.environ */
  mark = netstring_open(&request);
  for (char **e = environ; *e; ++e)
    if (!netstring_cats(&request, *e)) return 0;
  return netstring_close(&request, mark) && netstring_cats(&request, cut)
      && wire_request_end(&request, frame);
}

/* Field i of Hdrs, as it is in the request. */
static int hdrs_item(const struct message_collect *m, size_t i, const char **f, size_t *flen)
{
  size_t pos = 0;
  for (size_t k = 0; netstring_next(m->hdrs.s, m->hdrs.len, &pos, f, flen) == 1; ++k)
    if (k == i) return 1;
  return 0;
}

/* The policy names the fields it edits by their place in Hdrs; the queue
 * wrapper finds them by their place in the stored message, and checks their
 * name there. 1 ok, 0 a fault (why says it). */
static int edits_place(const struct checkid_call *c, struct policy_verdict *v)
{
  static stralloc placed;
  size_t pos = 0, wl, nl, ll, seen[VERDICT_EDITS_MAX];
  const char *w, *n, *l, *why_not = 0;
  if (!v->nedits) return 1;
  placed.len = 0;
  for (size_t k = 0; !why_not && wire_edit_next(v, &pos, &w, &wl, &n, &nl, &l, &ll) == 1; ++k) {
    unsigned long i;
    const char *f;
    size_t flen;
    const struct message_field *mf = 0;
    if (!c->message) why_not = "header edits before the message was seen";
    else if (!wl || wl > 9 || scan_ulong(w, &i) != wl || !(mf = message_collect_field(c->message, i))
             || !hdrs_item(c->message, i, &f, &flen))
      why_not = "a header edit names a field Hdrs does not have";
    for (size_t j = 0; !why_not && j < k; ++j)
      if (seen[j] == i) why_not = "two header edits of one field";
    if (why_not) break;
    seen[k] = i;
    char at[FMT_ULONG];
    if (!wire_edit_cat(&placed, at, fmt_ulong(at, mf->at), f, mf->namelen, l, ll)) die_nomem();
  }
  if (why_not) return stralloc_copys(&why, why_not) ? 0 : (die_nomem(), 0);
  if (!stralloc_copy(&v->edits, &placed)) die_nomem();
  return 1;
}

/* 1 with the verdict in v, 0 on a fault (why says it); *edits_lost: the
 * fault is a reply that asked for header edits. */
static int call(const struct checkid_call *c, struct policy_verdict *v, int *edits_lost)
{
  *edits_lost = 0;
  if (!request_build(c)) die_nomem();
  if (!policy_call(&request, &answer, deadline_in(settings.calltimeout_ms), &why)) return 0;
  if (!wire_reply_decode(answer.s, answer.len, v)) {
    if (!stralloc_copys(&why, "malformed reply from the policy process")) die_nomem();
    return 0;
  }
  int r = verdict_check(v, &why);
  if (r < 0) die_nomem();
  if (r && edits_place(c, v)) return 1;
  *edits_lost = v->nedits > 0;
  return 0;
}

enum outcome checkid_decide(const struct checkid_call *c, struct policy_verdict *verdict,
                            stralloc *refusal)
{
  static stralloc fault_xcode = { "4.3.0", 5, 0 };
  int edits_lost;
  verdict_reset(verdict);
  if (!call(c, verdict, &edits_lost)) {
    /* a fault: logged with its reason, then the fault policy; but a reply
     * whose header edits cannot be made is never accepted without them (a
     * client that sends 501 forged Authentication-Results fields must not
     * get them stored unrenamed) */
    verdict_reset(verdict);
    if (settings.onerror_accept && !edits_lost) {
      /* never final: a client that makes its own call fail (a silent DNS
       * server of its own) must not switch off the later checks */
      decision_log(c, "FAULT-ACCEPT", 0, 0, &why);
      verdict->action = ACT_CONTINUE;
      return GO_ON;
    }
    decision_log(c, "FAULT", 451, &fault_xcode, &why);
    verdict->action = ACT_TEMPFAIL;
    verdict->code = 451;
    if (!stralloc_copys(refusal, "451 4.3.0 temporary failure in the sender policy check, try again later\r\n"))
      die_nomem();
    return REFUSED;
  }
  decision_log(c, policy_action_name(verdict->action), verdict->code, &verdict->xcode, &verdict->text);
  if (verdict->action == ACT_REJECT || verdict->action == ACT_TEMPFAIL) {
    if (!verdict_reply(verdict, refusal)) die_nomem();
    return REFUSED;
  }
  return GO_ON;
}
