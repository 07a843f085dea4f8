#include "commands.h"
#include "checkid.h"
#include "client.h"
#include "ehlo_rewrite.h"
#include "log.h"
#include "netstring.h"
#include "prog.h"
#include "sanitize.h"
#include "session.h"
#include "session_end.h"
#include "settings.h"
#include "smtp_addr.h"
#include "tls.h"
#include "verdict.h"
#include <stdio.h>
#include <string.h>

#define LINE_MAX_AUTH 12288        /* an AUTH response line (RFC 4954) */

static struct policy_verdict fresh;   /* this command's verdict */
static stralloc refusal, scratch;

void reply_relay(int prog_code, const struct policy_verdict *v)
{
  if (v && v->code >= 200 && v->code <= 299 && prog_code >= 200 && prog_code <= 299) {
    if (!verdict_reply(v, &scratch)) die_nomem();
    client_out_sa(&scratch);
  } else {
    client_out_sa(prog_reply_text());
  }
}

static void verdict_apply(void)
{
  if (!verdict_copy(&session.txn.applied, &fresh)) die_nomem();
}

void smtp_forward(const stralloc *line, const stralloc *arg)
{
  (void)arg;
  prog_command(line);
  client_out_sa(prog_reply_text());
}

void smtp_unimplemented(const stralloc *line, const stralloc *arg)
{
  (void)line;
  (void)arg;
  client_out("502 unimplemented (#5.5.1)\r\n");
}

static void greeting(const stralloc *line, const stralloc *arg, int ehlo)
{
  static const char *const starttls[] = { "STARTTLS", 0 };
  int code = prog_command(line);
  if (code >= 200 && code <= 299) {
    session_greeted(arg);
    if (ehlo && !ehlo_rewrite(prog_reply_text(), settings.keyword, tls_offered() ? starttls : 0))
      die_nomem();
  }
  client_out_sa(prog_reply_text());
}

/* RFC 3207. prog never sees STARTTLS: the TLS end in front of the proxy does
 * the TLS, and prog's transaction ends here, as the session starts over. */
void smtp_starttls(const stralloc *line, const stralloc *arg)
{
  const char *rest;
  size_t n;
  if (tls_active()) { client_out("503 5.5.1 TLS already active\r\n"); return; }
  if (!tls_offered()) { smtp_unimplemented(line, arg); return; }
  if (arg->len) { client_out("501 5.5.4 syntax: STARTTLS takes no argument\r\n"); return; }
  /* RFC 3207 4.2 wants a login in clear forgotten, and prog cannot forget
   * it: mail inside TLS would go on under whoever logged in outside */
  if (session.authenticated) { client_out("503 5.5.1 STARTTLS not allowed after AUTH\r\n"); return; }
  /* what the client sent behind STARTTLS in clear is never executed, before
   * or after the handshake (CVE-2011-0411's class) */
  if ((n = client_unread(&rest))) {
    char num[24];
    snprintf(num, sizeof num, "%zu", n);
    warn("dropped ", num, " bytes pipelined behind STARTTLS", (char *)0);
    client_consume(n);
  }
  if (session.txn.active) {
    prog_send("RSET\r\n", 6);
    prog_reply();
  }
  /* RFC 3207 4.2: nothing the client said before TLS counts */
  session.have_helo = session.have_id = 0;
  session.helo.len = session.id.len = 0;
  session.tls_restarted = 1;      /* prog still holds the HELO given in clear */
  txn_clear();
  client_out("220 2.0.0 Ready to start TLS\r\n");
  client_flush();
  if (!tls_start()) session_end(0, 111);
}

void smtp_helo(const stralloc *line, const stralloc *arg) { greeting(line, arg, 0); }
void smtp_ehlo(const stralloc *line, const stralloc *arg) { greeting(line, arg, 1); }

void smtp_id(const stralloc *line, const stralloc *arg)
{
  (void)line;
  if (session.txn.active) { client_out("503 5.5.1 ID must come before MAIL\r\n"); return; }
  if (session.have_id) { client_out("503 5.5.1 ID already given\r\n"); return; }
  size_t len = arg->len;
  while (len && arg->s[len - 1] == ' ') --len;
  if (!smtp_domain_valid(arg->s, len)) { client_out("501 5.5.4 syntax: ID domain\r\n"); return; }
  if (!stralloc_copyb(&session.id, arg->s, len)) die_nomem();
  session.have_id = 1;
  client_out("250 2.1.0 ID ");
  client_out_sa(&session.id);
  client_out(" accepted\r\n");
}

/* prog's transaction and ours change together: only when prog accepts MAIL,
 * or when we end it there with RSET. A MAIL prog refuses (555) leaves both. */
void smtp_mail(const stralloc *line, const stralloc *arg)
{
  static stralloc sender;
  struct transaction *t = &session.txn;
  if (settings.tls_required && !tls_active()) {
    client_out("530 5.7.0 Must issue a STARTTLS command first\r\n");
    return;
  }
  if (session.tls_restarted && !session.have_helo) {
    /* the stored Received line must not carry the HELO given in clear */
    client_out("503 5.5.1 EHLO or HELO first: STARTTLS started the session over\r\n");
    return;
  }
  if (!smtp_addr_parse(arg->s, arg->len, &sender)) { smtp_forward(line, arg); return; }
  struct checkid_call c = { "mail", 4, &sender, 0, 0 };
  if (!session.skip_policy && checkid_decide(&c, &fresh, &refusal) == REFUSED) {
    client_out_sa(&refusal);
    if (t->active) {
      /* prog still holds the old transaction: end it there too */
      prog_send("RSET\r\n", 6);
      prog_reply();
      txn_clear();
    }
    return;
  }
  int code = prog_command(line);
  if (code >= 200 && code <= 299) {
    txn_clear();
    t->active = 1;
    if (!stralloc_copy(&t->sender, &sender)) die_nomem();
    if (!session.skip_policy) verdict_apply();
  }
  reply_relay(code, session.skip_policy ? 0 : &fresh);
}

static void rcpt_add(const stralloc *rcpt)
{
  if (!netstring_catb(&session.txn.rcpts, rcpt->s, rcpt->len)) die_nomem();
  ++session.txn.nrcpts;
}

/* Each call carries every recipient so far: the cap also bounds what a
 * transaction costs the policy (RFC 5321 4.5.3.1.10: the client sends the
 * rest in another transaction). */
static int rcpt_limit_reached(void)
{
  struct transaction *t = &session.txn;
  if (t->nrcpts < settings.maxrcpt) return 0;
  if (t->nrcpts == settings.maxrcpt) {
    stralloc ip = { 0 };
    if (sanitize_cats(&ip, settings.remote_ip, 64) && stralloc_0(&ip))
      warn("too many recipients from ", ip.s, (char *)0);
    stralloc_free(&ip);
    ++t->nrcpts;   /* logged once per transaction */
  }
  client_out("452 4.5.3 too many recipients\r\n");
  return 1;
}

void smtp_rcpt(const stralloc *line, const stralloc *arg)
{
  static stralloc rcpt;
  struct transaction *t = &session.txn;
  if (!t->active) { smtp_forward(line, arg); return; }
  if (!smtp_addr_parse(arg->s, arg->len, &rcpt)) { smtp_forward(line, arg); return; }
  if (rcpt_limit_reached()) return;
  if (session.skip_policy || verdict_is_final(t->applied.action)) {
    int code = prog_command(line);
    if (code >= 200 && code <= 299) rcpt_add(&rcpt);
    client_out_sa(prog_reply_text());
    return;
  }
  struct checkid_call c = { "rcpt", 5, &t->sender, &rcpt, 0 };
  if (checkid_decide(&c, &fresh, &refusal) == REFUSED) { client_out_sa(&refusal); return; }
  int code = prog_command(line);
  if (code >= 200 && code <= 299) {
    rcpt_add(&rcpt);
    verdict_apply();
  }
  reply_relay(code, &fresh);
}

void smtp_rset(const stralloc *line, const stralloc *arg)
{
  (void)arg;
  int code = prog_command(line);
  if (code >= 200 && code <= 299) txn_clear();
  client_out_sa(prog_reply_text());
}

void smtp_quit(const stralloc *line, const stralloc *arg)
{
  (void)arg;
  prog_command(line);
  client_out_sa(prog_reply_text());
  session_end(0, -1);
}

/* AUTH by a patched prog: relay the exchange line by line; a 235 means the
 * client is authenticated, and its mail skips the policy. */
void smtp_auth(const stralloc *line, const stralloc *arg)
{
  static stralloc response;
  (void)arg;
  if (settings.tls_required && !tls_active()) {
    /* RFC 4954: no credentials in clear where TLS is required */
    client_out("538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    return;
  }
  int code = prog_command(line);
  while (code == 334) {
    client_out_sa(prog_reply_text());
    enum line_status st = client_line(&response, LINE_MAX_AUTH);
    if (st == LINE_EOF) session_end(0, -1);
    if (st == LINE_TOO_LONG || memchr(response.s, '\0', response.len)
        || memchr(response.s, '\r', response.len))
      if (!stralloc_copys(&response, "*")) die_nomem();   /* cancels the exchange */
    code = prog_command(&response);
  }
  if (code == 235) session.skip_policy = session.authenticated = 1;
  client_out_sa(prog_reply_text());
}
