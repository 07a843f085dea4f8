/* DATA: the message relayed to prog in blocks, every line end checked
 * (data_scan.h); while the verdict is CONTINUE its header and body are
 * collected for checkID; the final dot goes to prog only once this message's
 * verdict is fixed, and the queue wrapper gets it meanwhile (queue_channel.h). */
#include "checkid.h"
#include "client.h"
#include "commands.h"
#include "data_scan.h"
#include "log.h"
#include "message_collect.h"
#include "netstring.h"
#include "prog.h"
#include "queue_channel.h"
#include "sanitize.h"
#include "session.h"
#include "session_end.h"
#include "settings.h"
#include "tls.h"
#include "verdict.h"

#define HDRS_MAX (256 * 1024)      /* header section passed to checkID */

static struct message_collect collect;   /* Hdrs and Body, while CONTINUE */
static struct policy_verdict fresh;      /* checkID's verdict at end of data */
static stralloc refusal;

/* The verdict for the message whose final dot was just forwarded. It exists
 * only from that moment until prog's reply to the dot, and is handed out
 * once: the one wrapper that can be running then is this message's. */
static struct policy_verdict pending;
static int pending_taken;

static int pending_serve(void)
{
  queue_channel_answer(pending_taken ? 0 : &pending, &pending_taken);
  return queue_channel_fd();
}

/* The wrapper spools what prog writes: a message longer than the limit is
 * refused here with 552, and the wrapper drops it (it counts the same bytes). */
static void pending_too_big(const stralloc *sender)
{
  static stralloc xcode = { "5.3.4", 5, 0 };
  struct checkid_call c = { "data", 7, sender, 0, 0 };
  verdict_reset(&pending);
  pending.action = ACT_REJECT;
  pending.code = 552;
  if (!stralloc_copys(&pending.xcode, "5.3.4")
      || !stralloc_copys(&pending.text, "sorry, that message size exceeds my databytes limit")
      || !verdict_reply(&pending, &refusal))
    die_nomem();
  decision_log(&c, "TOO-BIG", 552, &xcode, &pending.text);
}

/* TLS is recorded right above qmail-smtpd's Received line (RFC 8314 4.3;
 * qmail-smtpd itself writes "with SMTP"): it goes in as header0, below the
 * policy's own headers. */
static void pending_trace(void)
{
  static stralloc list;
  const char *trace = tls_trace();
  if (!trace) return;
  list.len = 0;
  size_t item = netstring_open(&list);
  if (item == (size_t)-1 || !netstring_cats(&list, "Received-TLS:") || !netstring_cats(&list, trace)
      || !netstring_close(&list, item) || !stralloc_cat(&list, &pending.headers)
      || !stralloc_copy(&pending.headers, &list))
    die_nomem();
  ++pending.nheaders;
}

/* The final dot: fix the verdict (calling checkID while CONTINUE), let it go
 * to prog, and reply to the client. REJECT and TEMPFAIL make the wrapper exit
 * 31 / 71; prog's generic reply to that is replaced by checkID's. */
static void data_end(int collecting, int too_big)
{
  struct transaction *t = &session.txn;
  int called = 0;
  enum outcome o = GO_ON;
  queue_channel_drain_stale();
  if (too_big) {
    pending_too_big(&t->sender);
  } else if (collecting) {
    if (!message_collect_end(&collect)) die_nomem();
    struct checkid_call c = { "data", 7, &t->sender, 0, &collect };
    o = checkid_decide(&c, &fresh, &refusal);
    called = 1;
    if (!verdict_copy(&pending, &fresh)) die_nomem();
  } else if (session.skip_policy || t->applied.action == ACT_NONE) {
    verdict_reset(&pending);
    pending.action = ACT_ACCEPT;
  } else if (!verdict_copy(&pending, &t->applied)) {
    die_nomem();
  }
  pending_trace();
  pending_taken = 0;

  prog_send(".\r\n", 3);
  int code = prog_reply_serving(queue_channel_fd(), pending_serve);
  int refused = pending.action == ACT_REJECT || pending.action == ACT_TEMPFAIL;
  if (refused && pending_taken && code / 100 == (pending.action == ACT_REJECT ? 5 : 4))
    client_out_sa(&refusal);
  else if (called && o == GO_ON)
    reply_relay(code, &fresh);
  else
    client_out_sa(prog_reply_text());
  if (!pending_taken && pending.action != ACT_ACCEPT && code / 100 == 2)
    warn("warning: the verdict was not collected; is QMAILQUEUE honoured?", (char *)0);
  txn_clear();
}

static void bare_line_end(void)
{
  /* never forward an ambiguous line end (SMTP smuggling): prog gets EOF
   * mid-message and nothing is queued */
  stralloc ip = { 0 };
  if (sanitize_cats(&ip, settings.remote_ip, 64) && stralloc_0(&ip))
    warn("bare CR or LF in DATA from ", ip.s, " ", (char *)0);
  session_end("451 See https://cr.yp.to/docs/smtplf.html.\r\n", 111);
}

static void data_relay(void)
{
  enum data_state st = D_BOL;
  int collecting = !session.skip_policy && session.txn.applied.action == ACT_CONTINUE;
  unsigned long long relayed = 0;   /* bytes given to prog, CRLF and dots as sent */
  unsigned long databytes = queue_channel_fd() >= 0 ? queue_databytes() : 0;
  if (collecting) message_collect_start(&collect, settings.bodymax, HDRS_MAX);
  for (;;) {
    const char *p;
    size_t len = client_unread(&p);
    if (!len) {
      /* the client vanished mid-DATA: prog sees EOF and queues nothing */
      if (client_fill() <= 0) session_end(0, -1);
      continue;
    }
    struct data_step step = data_step(&st, p, len);
    if (step.result == SCAN_BARE) bare_line_end();
    if (step.forward) {
      prog_send(p, step.forward);
      relayed += step.forward;
      if (collecting && !message_collect_feed(&collect, p, step.forward)) die_nomem();
    }
    client_consume(step.consume);
    if (step.result == SCAN_END) {
      data_end(collecting, databytes && relayed > databytes);
      return;
    }
    /* bytes held back wait for more: the terminator may be completed */
    if (step.consume < len && client_fill() <= 0) session_end(0, -1);
  }
}

void smtp_data(const stralloc *line, const stralloc *arg)
{
  (void)arg;
  int code = prog_command(line);
  client_out_sa(prog_reply_text());
  if (code == 354) data_relay();
}
