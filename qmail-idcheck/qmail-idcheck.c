/* qmail-idcheck: an SMTP line proxy between tcpserver and qmail-smtpd that
 * speaks the ID extension and asks checkID (Python) at MAIL, RCPT and the end
 * of data; qmail-idcheck-queue carries out the verdict at the queue.
 *
 * Commands are handed to prog one at a time and each reply is read whole
 * before the next command goes on, so pipelined batches stay in order;
 * replies to the client are collected and written in one write whenever the
 * client's input runs dry. DATA is relayed in blocks, refusing bare CR and
 * bare LF so the proxy and qmail-smtpd always agree where a message ends. */
#include "databytes.h"
#include "deadline.h"
#include "header_fold.h"
#include "netstring.h"
#include "policy.h"
#include "policy_wire.h"
#include "sanitize.h"
#include "sibling.h"
#include "smtp_addr.h"
#include "spawn_stdio.h"
#include "message_collect.h"
#include "stralloc.h"
#include "stream.h"
#include "wait_deadline.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define USAGE "qmail-idcheck: usage: qmail-idcheck prog [args...]\n"
#define LINE_MAX_COMMAND 1000      /* bytes, CRLF included (RFC 5321 text line) */
#define LINE_MAX_AUTH 12288        /* an AUTH response line (RFC 4954) */
#define REPLY_TEXT_MAX 400         /* checkID's reply text on the wire */
#define HEADERS_MAX 100
#define HEADER_BYTES_MAX 65536      /* all of a verdict's headers: one datagram */
#define HDRS_MAX (256 * 1024)      /* header section passed to checkID */

extern char **environ;

/* Configuration, read once from the environment. */
static const char *remote_ip;
static int64_t timeout_ms = 1200 * 1000;       /* IDCHECK_TIMEOUT, as timeoutsmtpd */
static int64_t calltimeout_ms = 30 * 1000;     /* IDCHECK_CALLTIMEOUT */
static int onerror_accept;                     /* IDCHECK_ONERROR=accept */
static int skip_policy;                        /* RELAYCLIENT or IDCHECK_SKIP */
static const char *keyword = "ID";             /* IDCHECK_KEYWORD */
static size_t bodymax = 1048576;               /* IDCHECK_BODYMAX */
static unsigned long maxrcpt = 1000;           /* IDCHECK_MAXRCPT */
static unsigned long databytes;                /* IDCHECK_DATABYTES, with the wrapper */
static int channel = -1;   /* to qmail-idcheck-queue: it asks, we answer */

/* The two sides. */
static char client_space[65536], prog_space[8192];
static struct stream client, progout;
static int progin = -1;
static pid_t prog_pid = -1;
static stralloc to_client;                     /* replies not yet written */
/* The client's idle deadline runs from the last byte prog was given, not the
 * last byte read: bytes the proxy holds back (a partial line, a possible
 * terminator) are no progress to qmail-smtpd, whose own timer keeps running. */
static deadline_t client_deadline;

/* Session state: the ID and HELO belong to the session, the rest to the
 * current transaction. */
static stralloc helo, id;
static int have_helo, have_id;

struct transaction {
  int active;                 /* prog accepted MAIL */
  stralloc sender;
  stralloc rcpts;             /* netstrings: the accepted recipients */
  unsigned long nrcpts;       /* how many: at most maxrcpt */
  struct policy_verdict applied;  /* the verdict in force, with its headers;
                                     ACT_NONE: not asked, CONTINUE: ask again */
};
static struct transaction txn;

static stralloc line, arg, reply, scratch, request, answer, why, logline;
static struct message_collect collect;   /* Hdrs and Body, while CONTINUE */

/* ---- leaving ---- */

static void flush_client(void);

/* prog's exit status, waiting at most seconds (then it is killed). */
static int prog_wait(unsigned seconds)
{
  if (prog_pid <= 0) return 0;
  int status = wait_deadline(prog_pid, seconds, 0);
  prog_pid = -1;
  if (status >= 0 && WIFEXITED(status)) return WEXITSTATUS(status);
  return 111;
}

/* The session is over: tell the client (if there is a last word), let prog
 * see EOF and finish, and leave with prog's exit status. */
static void finish(const char *last_words, int code)
{
  if (last_words) stralloc_cats(&to_client, last_words);
  flush_client();
  policy_end();
  if (progin >= 0) close(progin);
  progin = -1;
  int status = prog_wait(10);
  _exit(code >= 0 ? code : status);
}

static void die_prog(void)
{
  if (prog_pid > 0) kill(prog_pid, SIGTERM);
  finish("421 4.3.0 mail server unavailable, closing connection\r\n", 111);
}

static void die_timeout(void)
{
  finish("451 timeout (#4.4.2)\r\n", 111);
}

static void die_nomem(void)
{
  finish("421 out of memory (#4.3.0)\r\n", 111);
}

/* ---- logging ---- */

static void log_flush(void)
{
  if (!stralloc_catb(&logline, "\n", 1)) return;
  if (write(2, logline.s, logline.len) < 0) {}
  logline.len = 0;
}

static void log_start(void)
{
  char num[40];
  snprintf(num, sizeof num, "qmail-idcheck: pid %d ", (int)getpid());
  stralloc_copys(&logline, num);
}

static void log_field(const char *s, size_t len, int present)
{
  if (present && len) sanitize_catb(&logline, s, len, 200);
  else stralloc_cats(&logline, "-");
  stralloc_cats(&logline, " ");
}

/* qmail-idcheck: pid N IP ID HELO MAIL stage[:rcpt] action [code [xcode]] text */
static void log_decision(const stralloc *sender, const char *stage,
                         const stralloc *rcpt, const char *action,
                         int code, const stralloc *xcode, const stralloc *text)
{
  log_start();
  log_field(remote_ip, remote_ip ? strlen(remote_ip) : 0, remote_ip != 0);
  log_field(id.s, id.len, have_id);
  log_field(helo.s, helo.len, have_helo);
  log_field(sender->s, sender->len, 1);
  stralloc_cats(&logline, stage);
  if (rcpt) {
    stralloc_cats(&logline, ":");
    sanitize_catb(&logline, rcpt->s, rcpt->len, 200);
  }
  stralloc_cats(&logline, " ");
  stralloc_cats(&logline, action);
  if (code) {
    char num[8];
    snprintf(num, sizeof num, " %d", code);
    stralloc_cats(&logline, num);
  }
  if (xcode && xcode->len) { stralloc_cats(&logline, " "); sanitize_catb(&logline, xcode->s, xcode->len, 16); }
  if (text->len) { stralloc_cats(&logline, " "); sanitize_catb(&logline, text->s, text->len, 400); }
  log_flush();
}

/* ---- the client side ---- */

static void out(const char *s)
{
  if (!stralloc_cats(&to_client, s)) die_nomem();
}

static void out_sa(const stralloc *sa)
{
  if (!stralloc_cat(&to_client, sa)) die_nomem();
}

static void flush_client(void)
{
  if (!to_client.len) return;
  /* a client that stops reading cannot hold the session past the timeout */
  if (write_all_deadline(1, to_client.s, to_client.len, deadline_in(timeout_ms)) < 0) {
    to_client.len = 0;
    policy_end();
    if (progin >= 0) close(progin);
    progin = -1;
    prog_wait(10);
    _exit(111);
  }
  to_client.len = 0;
}

/* Replies are written when the client's input runs dry, as qmail-smtpd does:
 * a pipelined batch gets all its replies in one write. */
static long client_fill(void)
{
  flush_client();
  long n = stream_fill(&client, client_deadline);
  if (n < 0 && errno == ETIMEDOUT) die_timeout();
  return n;
}

enum line_status { LINE_OK, LINE_TOO_LONG, LINE_EOF };

/* The next line from the client, without its LF and the one CR before it
 * (qmail-smtpd's rule: a bare LF ends a command too). A line longer than max
 * is read to its end and thrown away. */
static enum line_status client_line(size_t max)
{
  int too_long = 0;
  for (;;) {
    long lf = stream_find_lf(&client);
    if (lf >= 0) {
      size_t len = (size_t)lf - client.start;
      const char *p = client.buf + client.start;
      client.start = (size_t)lf + 1;
      if (too_long || len + 1 > max) return LINE_TOO_LONG;
      if (len && p[len - 1] == '\r') --len;
      if (!stralloc_copyb(&line, p, len)) die_nomem();
      return LINE_OK;
    }
    if (client.end - client.start > max) {
      too_long = 1;
      client.start = client.end;   /* keep nothing of it */
    }
    long n = client_fill();
    if (n <= 0) return LINE_EOF;
  }
}

/* ---- the prog side ---- */

static void prog_send(const char *s, size_t len)
{
  if (write_all_deadline(progin, s, len, deadline_in(timeout_ms)) < 0) die_prog();
  client_deadline = deadline_in(timeout_ms);
}

static int last_code;   /* of prog's last reply: 421 means it is closing */

static int prog_reply(void)
{
  int r = reply_read(&progout, &reply, &last_code, deadline_in(timeout_ms));
  if (r <= 0) die_prog();
  return last_code;
}

/* Forward the current command line to prog and read its whole reply. */
static int prog_command(void)
{
  if (!stralloc_copy(&scratch, &line) || !stralloc_catb(&scratch, "\r\n", 2)) die_nomem();
  prog_send(scratch.s, scratch.len);
  return prog_reply();
}

static void prog_start(char **argv)
{
  int in[2], outp[2];
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0) {
    out("421 4.3.0 cannot start the mail server\r\n");
    flush_client();
    _exit(111);
  }
  int r = spawn_stdio(&prog_pid, argv[0], argv, in[0], outp[1], 1);
  if (r != 0) {
    dprintf(2, "qmail-idcheck: pid %d cannot run %s: %s\n", (int)getpid(), argv[0], strerror(r));
    prog_pid = -1;
    out("421 4.3.0 cannot start the mail server\r\n");
    flush_client();
    _exit(111);
  }
  close(in[0]);
  close(outp[1]);
  progin = in[1];
  fcntl(progin, F_SETFL, O_NONBLOCK);
  fcntl(outp[0], F_SETFL, O_NONBLOCK);
  stream_init(&progout, outp[0], prog_space, sizeof prog_space);
}

/* ---- transactions ---- */

static void txn_clear(void)
{
  txn.active = 0;
  txn.sender.len = 0;
  txn.rcpts.len = 0;
  txn.nrcpts = 0;
  txn.applied.action = ACT_NONE;
  txn.applied.code = 0;
  txn.applied.xcode.len = txn.applied.text.len = txn.applied.headers.len = 0;
  txn.applied.nheaders = 0;
}

static int verdict_is_final(enum policy_action a)
{
  return a == ACT_ACCEPT || a == ACT_FILTER || a == ACT_DISCARD;
}

/* ---- checkID ---- */

static int xcode_valid(const char *s, size_t len, int code)
{
  /* class.subject.detail, class matching the reply code (RFC 3463) */
  if (!len) return 1;
  if (len < 5 || s[0] != '0' + code / 100 || s[1] != '.') return 0;
  size_t i = 2, digits = 0;
  while (i < len && s[i] >= '0' && s[i] <= '9') { ++i; ++digits; }
  if (!digits || digits > 3 || i >= len || s[i] != '.') return 0;
  ++i;
  digits = 0;
  while (i < len && s[i] >= '0' && s[i] <= '9') { ++i; ++digits; }
  return digits && digits <= 3 && i == len;
}

/* The meaning of a verdict: 1 usable, 0 a fault (reason in why). */
static int verdict_check(struct policy_verdict *v)
{
  const char *reason = 0;
  if (v->action == ACT_NONE) reason = "unknown action";
  else if (v->action == ACT_FAULT) reason = 0;
  else if (v->action == ACT_REJECT && (v->code < 500 || v->code > 599))
    reason = "REJECT needs a 5xx reply";
  else if (v->action == ACT_TEMPFAIL && (v->code < 400 || v->code > 499))
    reason = "TEMPFAIL needs a 4xx reply";
  else if (v->code && (v->code < 200 || v->code > 599)) reason = "reply code out of range";
  else if (!xcode_valid(v->xcode.s, v->xcode.len, v->code)) reason = "malformed enhanced status code";
  else if (v->nheaders > HEADERS_MAX) reason = "too many headers";
  /* only REPLY_TEXT_MAX bytes ever reach the client: a longer text would
   * only grow the log and the verdict the queue wrapper is sent */
  if (v->text.len > REPLY_TEXT_MAX) v->text.len = REPLY_TEXT_MAX;
  if (v->action == ACT_FAULT) {
    if (!stralloc_copy(&why, &v->text)) die_nomem();
    return 0;
  }
  if (!reason) {
    size_t pos = 0;
    const char *l, *t;
    size_t ll, tl;
    size_t bytes = 0;
    while (wire_header_next(v, &pos, &l, &ll, &t, &tl) == 1) {
      if (!header_label_valid(l, ll)) { reason = "invalid header label"; break; }
      if (!header_text_valid(t, tl)) { reason = "control character in header text"; break; }
      if ((bytes += ll + tl) > HEADER_BYTES_MAX) { reason = "headers too long"; break; }
      /* the wrapper folds with the same function: what passes here, it can write */
      scratch.len = 0;
      if (!header_fold(&scratch, l, ll, t, tl)) { reason = "header word too long to fold"; break; }
    }
  }
  if (reason) {
    stralloc_copys(&why, reason);
    return 0;
  }
  return 1;
}

static void env_list_put(stralloc *out_sa)
{
  size_t mark = netstring_open(out_sa);
  for (char **e = environ; *e; ++e)
    if (!netstring_cats(out_sa, *e)) die_nomem();
  if (!netstring_close(out_sa, mark)) die_nomem();
}

/* Ask checkID. nargs 4 at MAIL, 5 at RCPT (R = accepted recipients plus
 * rcpt, which may be empty: RCPT TO:<>), 7 at end of data. Returns 1 with the
 * verdict in v, 0 on a fault (why says it). */
static int checkid_call(int nargs, const stralloc *sender, const stralloc *rcpt,
                        struct policy_verdict *v)
{
  size_t frame;
  request.len = 0;
  int ok = wire_request_begin(&request, &frame, nargs)
        && wire_put_opt(&request, remote_ip, remote_ip ? strlen(remote_ip) : 0, remote_ip != 0)
        && wire_put_opt(&request, id.s, id.len, have_id)
        && wire_put_opt(&request, helo.s, helo.len, have_helo)
        && wire_put_opt(&request, sender->s, sender->len, 1);
  if (!ok) die_nomem();
  size_t mark = netstring_open(&request);
  if (nargs > 4 && !stralloc_cat(&request, &txn.rcpts)) die_nomem();
  if (rcpt && !netstring_catb(&request, rcpt->s, rcpt->len)) die_nomem();
  if (!netstring_close(&request, mark)) die_nomem();
  char size[24];
  snprintf(size, sizeof size, "%zu", nargs == 7 ? collect.bodysize : 0);
  if (!netstring_catb(&request, collect.hdrs.s, nargs == 7 ? collect.hdrs.len : 0)
      || !wire_put_opt(&request, collect.body.s, collect.body.len, nargs == 7)
      || !netstring_cats(&request, size))
    die_nomem();
  env_list_put(&request);
  if (!wire_request_end(&request, frame)) die_nomem();

  if (!policy_call(&request, &answer, deadline_in(calltimeout_ms), &why)) return 0;
  if (!wire_reply_decode(answer.s, answer.len, v)) {
    stralloc_copys(&why, "malformed reply from the policy process");
    return 0;
  }
  return verdict_check(v);
}

/* checkID's reply as one SMTP line, text sanitized. */
static void verdict_reply(const struct policy_verdict *v, stralloc *sa)
{
  char num[8];
  snprintf(num, sizeof num, "%03d ", v->code);
  if (!stralloc_copys(sa, num)) die_nomem();
  if (v->xcode.len) {
    sanitize_catb(sa, v->xcode.s, v->xcode.len, 16);
    stralloc_cats(sa, " ");
  }
  sanitize_catb(sa, v->text.s, v->text.len, REPLY_TEXT_MAX);
  if (!stralloc_catb(sa, "\r\n", 2)) die_nomem();
}

static struct policy_verdict fresh;

static void verdict_reset(struct policy_verdict *v)
{
  v->action = ACT_NONE;
  v->code = 0;
  v->xcode.len = v->text.len = v->headers.len = 0;
  v->nheaders = 0;
}

enum outcome { GO_ON, REFUSED };
static stralloc refusal;   /* the reply for a REFUSED outcome */

/* One policy decision. REFUSED: refusal holds the client's reply, and fresh
 * a REJECT or TEMPFAIL verdict (a fault under IDCHECK_ONERROR=tempfail is
 * one). GO_ON: the command goes on; fresh holds the verdict to apply if prog
 * accepts. */
static enum outcome decide(const stralloc *sender, const char *stage, int nargs,
                           const stralloc *rcpt)
{
  static stralloc fault_xcode = { "4.3.0", 5, 0 };
  verdict_reset(&fresh);
  if (!checkid_call(nargs, sender, rcpt, &fresh)) {
    /* a fault: logged with its reason, then the fault policy */
    verdict_reset(&fresh);
    if (onerror_accept) {
      /* never final: a client that makes its own call fail (a silent DNS
       * server of its own) must not switch off the later checks */
      log_decision(sender, stage, rcpt, "FAULT-ACCEPT", 0, 0, &why);
      fresh.action = ACT_CONTINUE;
      return GO_ON;
    }
    log_decision(sender, stage, rcpt, "FAULT", 451, &fault_xcode, &why);
    fresh.action = ACT_TEMPFAIL;
    fresh.code = 451;
    if (!stralloc_copys(&refusal, "451 4.3.0 temporary failure in the sender policy check, try again later\r\n"))
      die_nomem();
    return REFUSED;
  }
  log_decision(sender, stage, rcpt, policy_action_name(fresh.action),
               fresh.code, &fresh.xcode, &fresh.text);
  if (fresh.action == ACT_REJECT || fresh.action == ACT_TEMPFAIL) {
    verdict_reply(&fresh, &refusal);
    return REFUSED;
  }
  return GO_ON;
}

/* prog's reply is authoritative; when both say 2xx, checkID's text is sent. */
static void relay_reply(int prog_code, const struct policy_verdict *v)
{
  if (v && v->code >= 200 && v->code <= 299 && prog_code >= 200 && prog_code <= 299) {
    verdict_reply(v, &scratch);
    out_sa(&scratch);
  } else {
    out_sa(&reply);
  }
}

static void verdict_apply(void)
{
  struct policy_verdict *a = &txn.applied;
  a->action = fresh.action;
  a->code = fresh.code;
  if (!stralloc_copy(&a->xcode, &fresh.xcode) || !stralloc_copy(&a->text, &fresh.text)
      || !stralloc_copy(&a->headers, &fresh.headers))
    die_nomem();
  a->nheaders = fresh.nheaders;
}

/* ---- commands ---- */

static void smtp_forward(void)
{
  prog_command();
  out_sa(&reply);
}

static void ehlo_reply_rewrite(void)
{
  /* Insert our keyword before the last line; drop extensions the proxy
   * cannot carry: STARTTLS (it cannot see inside TLS), CHUNKING/BINARYMIME
   * (BDAT has no end-of-data line to check). */
  static stralloc texts;
  size_t n = 0, pos = 0;
  texts.len = 0;
  while (pos < reply.len) {
    const char *l = reply.s + pos;
    const char *e = memchr(l, '\n', reply.len - pos);
    size_t len = (size_t)(e - l) - 1;   /* without CRLF */
    pos = (size_t)(e - reply.s) + 1;
    const char *t = l + 4;
    size_t tlen = len > 4 ? len - 4 : 0;
    size_t w = 0;
    while (w < tlen && t[w] != ' ') ++w;
    if (n > 0 && ((w == 8 && !strncasecmp(t, "STARTTLS", 8))
                  || (w == 8 && !strncasecmp(t, "CHUNKING", 8))
                  || (w == 10 && !strncasecmp(t, "BINARYMIME", 10))))
      continue;
    if (!netstring_catb(&texts, t, tlen)) die_nomem();
    ++n;
  }
  /* rebuild: texts[0..n-2], keyword, texts[n-1] (or texts[0], keyword) */
  size_t tp = 0, i = 0;
  const char *f;
  size_t fl;
  reply.len = 0;
  while (netstring_next(texts.s, texts.len, &tp, &f, &fl) == 1) {
    int last = (i == n - 1);
    if (last && n > 1) {
      stralloc_cats(&reply, "250-");
      stralloc_cats(&reply, keyword);
      stralloc_cats(&reply, "\r\n");
    }
    stralloc_cats(&reply, (last && n > 1) ? "250 " : "250-");
    stralloc_catb(&reply, f, fl);
    stralloc_cats(&reply, "\r\n");
    ++i;
  }
  if (n == 1) {
    stralloc_cats(&reply, "250 ");
    stralloc_cats(&reply, keyword);
    if (!stralloc_cats(&reply, "\r\n")) die_nomem();
  }
}

static void smtp_helo(int ehlo)
{
  int code = prog_command();
  if (code >= 200 && code <= 299) {
    if (!stralloc_copy(&helo, &arg)) die_nomem();
    have_helo = 1;
    have_id = 0;
    id.len = 0;
    txn_clear();
    if (ehlo) ehlo_reply_rewrite();
  }
  out_sa(&reply);
}

static void smtp_id(void)
{
  if (txn.active) { out("503 5.5.1 ID must come before MAIL\r\n"); return; }
  if (have_id) { out("503 5.5.1 ID already given\r\n"); return; }
  size_t len = arg.len;
  while (len && arg.s[len - 1] == ' ') --len;
  if (!smtp_domain_valid(arg.s, len)) { out("501 5.5.4 syntax: ID domain\r\n"); return; }
  if (!stralloc_copyb(&id, arg.s, len)) die_nomem();
  have_id = 1;
  out("250 2.1.0 ID ");
  if (!stralloc_cat(&to_client, &id)) die_nomem();
  out(" accepted\r\n");
}

/* prog's transaction and ours change together: only when prog accepts MAIL,
 * or when we end it there with RSET. A MAIL prog refuses (555) leaves both. */
static void smtp_mail(void)
{
  static stralloc sender;
  if (!smtp_addr_parse(arg.s, arg.len, &sender)) { smtp_forward(); return; }
  if (!skip_policy && decide(&sender, "mail", 4, 0) == REFUSED) {
    out_sa(&refusal);
    if (txn.active) {
      /* prog still holds the old transaction: end it there too */
      prog_send("RSET\r\n", 6);
      prog_reply();
      txn_clear();
    }
    return;
  }
  int code = prog_command();
  if (code >= 200 && code <= 299) {
    txn_clear();
    txn.active = 1;
    if (!stralloc_copy(&txn.sender, &sender)) die_nomem();
    if (!skip_policy) verdict_apply();
  }
  relay_reply(code, skip_policy ? 0 : &fresh);
}

static void rcpt_add(const stralloc *rcpt)
{
  if (!netstring_catb(&txn.rcpts, rcpt->s, rcpt->len)) die_nomem();
  ++txn.nrcpts;
}

/* Each call carries every recipient so far: the cap also bounds a
 * transaction's policy work (RFC 5321 4.5.3.1.10: the client sends the rest
 * in another transaction). */
static int rcpt_limit_reached(void)
{
  if (txn.nrcpts < maxrcpt) return 0;
  if (txn.nrcpts == maxrcpt) {
    log_start();
    stralloc_cats(&logline, "too many recipients from ");
    log_field(remote_ip, remote_ip ? strlen(remote_ip) : 0, remote_ip != 0);
    log_flush();
    ++txn.nrcpts;   /* logged once per transaction */
  }
  out("452 4.5.3 too many recipients\r\n");
  return 1;
}

static void smtp_rcpt(void)
{
  static stralloc rcpt;
  if (!txn.active) { smtp_forward(); return; }
  if (!smtp_addr_parse(arg.s, arg.len, &rcpt)) { smtp_forward(); return; }
  if (rcpt_limit_reached()) return;
  if (skip_policy || verdict_is_final(txn.applied.action)) {
    int code = prog_command();
    if (code >= 200 && code <= 299) rcpt_add(&rcpt);
    out_sa(&reply);
    return;
  }
  if (decide(&txn.sender, "rcpt", 5, &rcpt) == REFUSED) { out_sa(&refusal); return; }
  int code = prog_command();
  if (code >= 200 && code <= 299) {
    rcpt_add(&rcpt);
    verdict_apply();
  }
  relay_reply(code, &fresh);
}

static void smtp_rset(void)
{
  int code = prog_command();
  if (code >= 200 && code <= 299) txn_clear();
  out_sa(&reply);
}

static void smtp_quit(void)
{
  prog_command();
  out_sa(&reply);
  finish(0, -1);
}

static void smtp_unimplemented(void)
{
  out("502 unimplemented (#5.5.1)\r\n");
}

/* AUTH by a patched prog: relay the exchange line by line; a 235 means the
 * client is authenticated, and its mail skips the policy. */
static void smtp_auth(void)
{
  int code = prog_command();
  while (code == 334) {
    out_sa(&reply);
    enum line_status st = client_line(LINE_MAX_AUTH);
    if (st == LINE_EOF) finish(0, -1);
    if (st == LINE_TOO_LONG || memchr(line.s, '\0', line.len) || memchr(line.s, '\r', line.len))
      if (!stralloc_copys(&line, "*")) die_nomem();   /* cancels the exchange */
    code = prog_command();
  }
  if (code == 235) skip_policy = 1;
  out_sa(&reply);
}

/* ---- DATA ---- */

enum data_state { D_BOL, D_MID, D_CR, D_DOT, D_DOTCR };
enum data_scan { SCAN_MORE, SCAN_END, SCAN_BARE };

/* Walk buf[0..len) from state *st. SCAN_END: *at is the index after the
 * terminating LF. SCAN_BARE: a CR or LF that is not part of CRLF. */
static enum data_scan data_scan(enum data_state *st, const char *buf, size_t len, size_t *at)
{
  enum data_state s = *st;
  for (size_t i = 0; i < len; ++i) {
    char c = buf[i];
    switch (s) {
      case D_BOL:
        s = c == '.' ? D_DOT : c == '\r' ? D_CR : D_MID;
        if (c == '\n') return SCAN_BARE;
        break;
      case D_MID:
        if (c == '\n') return SCAN_BARE;
        if (c == '\r') s = D_CR;
        break;
      case D_CR:
        if (c != '\n') return SCAN_BARE;
        s = D_BOL;
        break;
      case D_DOT:
        if (c == '\n') return SCAN_BARE;
        s = c == '\r' ? D_DOTCR : D_MID;
        break;
      case D_DOTCR:
        if (c != '\n') return SCAN_BARE;
        *st = D_BOL;
        *at = i + 1;
        return SCAN_END;
    }
  }
  *st = s;
  *at = len;
  return SCAN_MORE;
}

/* ---- end of data: the verdict for qmail-idcheck-queue ---- */

/* The verdict for the message whose final dot was just forwarded. It exists
 * only from that moment until prog's reply to the dot, and is handed out
 * once: the one wrapper that can be running then is this message's. */
static struct policy_verdict pending;
static int pending_set, pending_taken;

#define CHANNEL_QUESTIONS_MAX 64   /* drained per dot: the far ends are few */

static void channel_close(void)
{
  if (channel >= 0) close(channel);
  channel = -1;
}

/* Answer one question. EOF, HUP or an error means every far end is gone
 * (qmail-smtpd and its wrapper): the channel is closed, never polled again. */
static void channel_answer(int with_verdict)
{
  char buf[256];
  ssize_t n = recv(channel, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) { channel_close(); return; }
  size_t pos = 0, flen, plen;
  const char *f, *pid;
  if (netstring_next(buf, (size_t)n, &pos, &f, &flen) != 1 || flen != 3 || memcmp(f, "ask", 3)
      || netstring_next(buf, (size_t)n, &pos, &pid, &plen) != 1)
    return;
  scratch.len = 0;
  if (!netstring_catb(&scratch, pid, plen)) die_nomem();
  size_t asker = scratch.len;
  if (with_verdict && pending_set && !pending_taken) {
    static stralloc frame;
    frame.len = 0;
    if (!wire_reply_encode(&frame, &pending) || !netstring_catb(&scratch, frame.s, frame.len))
      die_nomem();
    if (send(channel, scratch.s, scratch.len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
      pending_taken = 1;
      return;
    }
    /* a fault: the wrapper is told there is none, and queues nothing */
    log_start();
    stralloc_cats(&logline, "fault: the verdict cannot be sent to the queue wrapper: ");
    stralloc_cats(&logline, strerror(errno));
    log_flush();
    scratch.len = asker;
  }
  if (!netstring_cats(&scratch, "none")) die_nomem();
  if (send(channel, scratch.s, scratch.len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {}
}

/* A question asked before the dot went out cannot be this message's. */
static void channel_drain_stale(void)
{
  for (int i = 0; channel >= 0 && i < CHANNEL_QUESTIONS_MAX; ++i) {
    struct pollfd p = { channel, POLLIN, 0 };
    if (poll(&p, 1, 0) <= 0) return;
    channel_answer(0);
  }
}

/* prog's reply to the final dot, answering the wrapper meanwhile. */
static int prog_reply_after_dot(void)
{
  deadline_t deadline = deadline_in(timeout_ms);
  while (stream_find_lf(&progout) < 0) {
    struct pollfd p[2] = { { progout.fd, POLLIN, 0 }, { channel, POLLIN, 0 } };
    int64_t left = deadline - now_ms();
    if (left <= 0) die_prog();
    int r = poll(p, channel >= 0 ? 2 : 1, left > 86400000 ? 86400000 : (int)left);
    if (r < 0 && errno != EINTR) die_prog();
    if (r <= 0) continue;
    if (channel >= 0 && p[1].revents) channel_answer(1);
    if (p[0].revents) break;
  }
  return prog_reply();
}

static void pending_from(const struct policy_verdict *v)
{
  pending.action = v->action;
  pending.code = v->code;
  if (!stralloc_copy(&pending.xcode, &v->xcode) || !stralloc_copy(&pending.text, &v->text)
      || !stralloc_copy(&pending.headers, &v->headers))
    die_nomem();
  pending.nheaders = v->nheaders;
}

/* The final dot: fix the verdict (calling checkID while CONTINUE), let it go
 * to prog, and reply to the client. REJECT and TEMPFAIL make the wrapper exit
 * 31 / 71; prog's generic reply to that is replaced by checkID's. */
static void data_end(int collecting, int too_big)
{
  int called = 0;
  enum outcome o = GO_ON;
  channel_drain_stale();
  if (too_big) {
    static stralloc xcode = { "5.3.4", 5, 0 };
    verdict_reset(&pending);
    pending.action = ACT_REJECT;
    pending.code = 552;
    if (!stralloc_copys(&pending.xcode, "5.3.4")
        || !stralloc_copys(&pending.text, "sorry, that message size exceeds my databytes limit")
        || !stralloc_copys(&refusal, "552 5.3.4 sorry, that message size exceeds my databytes limit\r\n"))
      die_nomem();
    log_decision(&txn.sender, "data", 0, "TOO-BIG", 552, &xcode, &pending.text);
  } else if (collecting) {
    if (!message_collect_end(&collect)) die_nomem();
    o = decide(&txn.sender, "data", 7, 0);
    called = 1;
    pending_from(&fresh);
  } else if (skip_policy || txn.applied.action == ACT_NONE) {
    verdict_reset(&pending);
    pending.action = ACT_ACCEPT;
  } else {
    pending_from(&txn.applied);
  }
  pending_set = 1;
  pending_taken = 0;

  prog_send(".\r\n", 3);
  int code = prog_reply_after_dot();
  int refused = pending.action == ACT_REJECT || pending.action == ACT_TEMPFAIL;
  if (refused && pending_taken && code / 100 == (pending.action == ACT_REJECT ? 5 : 4))
    out_sa(&refusal);
  else if (called && o == GO_ON)
    relay_reply(code, &fresh);
  else
    out_sa(&reply);
  if (!pending_taken && pending.action != ACT_ACCEPT && code / 100 == 2) {
    log_start();
    stralloc_cats(&logline, "warning: the verdict was not collected; is QMAILQUEUE honoured?");
    log_flush();
  }
  pending_set = 0;
  txn_clear();
}

static void smtp_data_relay(void)
{
  enum data_state st = D_BOL;
  int collecting = !skip_policy && txn.applied.action == ACT_CONTINUE;
  unsigned long long relayed = 0;   /* bytes given to prog, CRLF and dots as sent */
  if (collecting) message_collect_start(&collect, bodymax, HDRS_MAX);
  for (;;) {
    if (client.start == client.end) {
      long n = client_fill();
      if (n <= 0) {
        /* the client vanished mid-DATA: prog sees EOF and queues nothing */
        finish(0, -1);
      }
    }
    const char *p = client.buf + client.start;
    size_t len = client.end - client.start, at;
    enum data_scan r = data_scan(&st, p, len, &at);
    if (r == SCAN_BARE) {
      /* never forward an ambiguous line end (SMTP smuggling): prog gets EOF
       * mid-message and nothing is queued */
      log_start();
      stralloc_cats(&logline, "bare CR or LF in DATA from ");
      log_field(remote_ip, remote_ip ? strlen(remote_ip) : 0, remote_ip != 0);
      log_flush();
      finish("451 See https://cr.yp.to/docs/smtplf.html.\r\n", 111);
    }
    if (r == SCAN_END) {
      /* the terminator ".\r\n" is the last three bytes: held back until the
       * verdict is fixed */
      prog_send(p, at - 3);
      relayed += at - 3;
      if (collecting && !message_collect_feed(&collect, p, at - 3)) die_nomem();
      client.start += at;
      data_end(collecting, databytes && relayed > databytes);
      return;
    }
    /* hold back a possible ".", ".\r" at the start of a line: it may be the
     * terminator, completed by the next read */
    size_t hold = st == D_DOT ? 1 : st == D_DOTCR ? 2 : 0;
    if (len > hold) {
      prog_send(p, len - hold);
      relayed += len - hold;
      if (collecting && !message_collect_feed(&collect, p, len - hold)) die_nomem();
    }
    client.start += len - hold;
    if (hold) {
      long n = client_fill();
      if (n <= 0) finish(0, -1);
      st = D_BOL;   /* rescan the held bytes from the line's start */
    }
  }
}

static void smtp_data(void)
{
  int code = prog_command();
  out_sa(&reply);
  if (code == 354) smtp_data_relay();
}

/* ---- the command table ---- */

static const struct command {
  const char *verb;
  void (*fn)(void);
} commands[] = {
  { "mail", smtp_mail },
  { "rcpt", smtp_rcpt },
  { "data", smtp_data },
  { "rset", smtp_rset },
  { "quit", smtp_quit },
  { "auth", smtp_auth },
  { "starttls", smtp_unimplemented },
  { "bdat", smtp_unimplemented },
  { 0, smtp_forward },
};

static void smtp_ehlo(void) { smtp_helo(1); }
static void smtp_helo_plain(void) { smtp_helo(0); }

static void dispatch(void)
{
  /* verb up to the first space, argument after the spaces (as qmail-smtpd) */
  size_t i = 0;
  while (i < line.len && line.s[i] != ' ') ++i;
  size_t v = i;
  while (i < line.len && line.s[i] == ' ') ++i;
  if (!stralloc_copyb(&arg, line.s + i, line.len - i)) die_nomem();
  const char *verb = line.s;
  if (v == 4 && !strncasecmp(verb, "ehlo", 4)) { smtp_ehlo(); return; }
  if (v == 4 && !strncasecmp(verb, "helo", 4)) { smtp_helo_plain(); return; }
  if (v == strlen(keyword) && !strncasecmp(verb, keyword, v)) { smtp_id(); return; }
  for (const struct command *c = commands; ; ++c) {
    if (!c->verb || (strlen(c->verb) == v && !strncasecmp(verb, c->verb, v))) {
      c->fn();
      return;
    }
  }
}

/* Why IDCHECK_KEYWORD cannot name the extension, or 0. */
static const char *keyword_unusable(const char *s)
{
  /* verbs of SMTP and of its common extensions and qmail patches: the ID
   * command would take their place and they would stop working */
  static const char *const verbs[] = {
    "HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
    "HELP", "SEND", "SOML", "SAML", "TURN", "ETRN", "ATRN", "AUTH", "STARTTLS", "BDAT",
    "XCLIENT", "XFORWARD", 0
  };
  /* ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
  size_t len = strlen(s);
  if (!len || len > 32 || s[0] == '-') return "not an EHLO keyword";
  for (size_t i = 0; i < len; ++i) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return "not an EHLO keyword";
  }
  for (const char *const *v = verbs; *v; ++v)
    if (!strcasecmp(s, *v)) return "an SMTP command of that name exists";
  return 0;
}

/* The wrapper between prog and the real queue, and the channel it asks on.
 * The channel's far end must not be 0, 1, 2 or 6 (notqmail moves its error
 * pipe to 6 in the queue child and leaves other descriptors open). */
static int channel_child_end = -1;

static void queue_setup(void)
{
  const char *wrapper = sibling_path("qmail-idcheck-queue", "IDCHECK_QUEUEPROG", IDCHECK_BINDIR);
  const char *queue = getenv("IDCHECK_QUEUE");
  const char *qq = getenv("QMAILQUEUE");
  if (!queue || !*queue)
    queue = (qq && *qq && strcmp(qq, wrapper)) ? qq : "/var/qmail/bin/qmail-queue";
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    out("421 4.3.0 cannot set up the queue channel\r\n");
    flush_client();
    _exit(111);
  }
  channel = sv[0];
  channel_child_end = fcntl(sv[1], F_DUPFD, 7);   /* inheritable, above 6 */
  close(sv[1]);
  char num[24];
  snprintf(num, sizeof num, "%d", channel_child_end);
  if (channel_child_end < 0 || setenv("IDCHECK_CHANNEL", num, 1) < 0
      || setenv("IDCHECK_QUEUE", queue, 1) < 0 || setenv("QMAILQUEUE", wrapper, 1) < 0) {
    out("421 4.3.0 cannot set up the queue channel\r\n");
    flush_client();
    _exit(111);
  }
}

static int64_t env_seconds(const char *name, int64_t fallback)
{
  const char *s = getenv(name);
  if (!s || !*s) return fallback;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v <= 0 || v > 86400) return fallback;
  return (int64_t)v * 1000;
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    if (write(2, USAGE, sizeof USAGE - 1) < 0) {}
    return 100;
  }
  signal(SIGPIPE, SIG_IGN);
  char pidtext[24];
  snprintf(pidtext, sizeof pidtext, "%d", (int)getpid());
  setenv("IDCHECK_PID", pidtext, 1);   /* the policy's log lines carry it too */
  remote_ip = getenv("TCPREMOTEIP");
  timeout_ms = env_seconds("IDCHECK_TIMEOUT", timeout_ms);
  calltimeout_ms = env_seconds("IDCHECK_CALLTIMEOUT", calltimeout_ms);
  const char *onerror = getenv("IDCHECK_ONERROR");
  onerror_accept = onerror && !strcmp(onerror, "accept");
  skip_policy = getenv("RELAYCLIENT") != 0 || getenv("IDCHECK_SKIP") != 0;
  const char *kw = getenv("IDCHECK_KEYWORD");
  if (kw) {
    const char *unusable = keyword_unusable(kw);
    if (!unusable) {
      keyword = kw;
    } else {
      log_start();
      stralloc_cats(&logline, "warning: IDCHECK_KEYWORD=");
      sanitize_catb(&logline, kw, strlen(kw), 40);
      stralloc_cats(&logline, " refused (");
      stralloc_cats(&logline, unusable);
      stralloc_cats(&logline, "); the keyword is ID");
      log_flush();
    }
  }

  const char *bm = getenv("IDCHECK_BODYMAX");
  if (bm && *bm) {
    char *end;
    unsigned long v = strtoul(bm, &end, 10);
    if (!*end) bodymax = v;
  }
  const char *mr = getenv("IDCHECK_MAXRCPT");
  if (mr && *mr) {
    char *end;
    unsigned long v = strtoul(mr, &end, 10);
    if (!*end && v) maxrcpt = v;
  }
  /* A session that skips the policy from the start never has headers or a
   * verdict to carry out: qmail-smtpd keeps its own queue program, and the
   * wrapper's spool limit does not apply. */
  if (!skip_policy) {
    queue_setup();
    databytes = databytes_limit();
  }

  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
  stream_init(&client, 0, client_space, sizeof client_space);
  client_deadline = deadline_in(timeout_ms);
  prog_start(argv + 1);
  if (channel_child_end >= 0) close(channel_child_end);   /* prog and its wrapper hold it */

  prog_reply();                 /* the greeting, or prog's refusal */
  out_sa(&reply);

  for (;;) {
    if (last_code == 421) finish(0, -1);
    enum line_status st = client_line(LINE_MAX_COMMAND);
    if (st == LINE_EOF) finish(0, -1);
    if (st == LINE_TOO_LONG) { out("500 5.5.2 line too long\r\n"); continue; }
    if (memchr(line.s, '\0', line.len)) { out("500 5.5.2 NUL in command\r\n"); continue; }
    if (memchr(line.s, '\r', line.len)) { out("500 5.5.2 bare CR in command\r\n"); continue; }
    dispatch();
  }
}
