/* qmail-idcheck: an SMTP line proxy between tcpserver and qmail-smtpd that
 * speaks the ID extension and asks checkID (Python) at MAIL, RCPT and the end
 * of data; qmail-idcheck-queue carries out the verdict at the queue.
 *
 * Commands are handed to prog one at a time and each reply is read whole
 * before the next command goes on, so pipelined batches stay in order;
 * replies to the client are written together whenever its input runs dry.
 *
 *   settings.c      the environment, read once
 *   client.c        the client's side: lines, replies, the idle deadline
 *   prog.c          qmail-smtpd's side: commands, whole replies
 *   commands.c      HELO, EHLO, ID, MAIL, RCPT, RSET, QUIT, AUTH
 *   data.c          DATA: the relay, the end of data, the verdict's hand-over
 *   checkid.c       asking checkID (policy.c: where Python runs)
 *   queue_channel.c the verdict channel to qmail-idcheck-queue
 *   tls.c           STARTTLS through a UCSPI-TLS end in front
 */
#include "client.h"
#include "commands.h"
#include "log.h"
#include "policy.h"
#include "prog.h"
#include "queue_channel.h"
#include "session.h"
#include "session_end.h"
#include "settings.h"
#include "sibling.h"
#include "stralloc.h"
#include "tls.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define USAGE "qmail-idcheck prog [args...]"
#define LINE_MAX_COMMAND 1000      /* bytes, CRLF included (RFC 5321 text line) */

const char *PROG = "qmail-idcheck";

static const struct command {
  const char *verb;                /* 0: the extension's keyword */
  void (*fn)(const stralloc *line, const stralloc *arg);
} commands[] = {
  { "helo", smtp_helo },
  { "ehlo", smtp_ehlo },
  { 0, smtp_id },
  { "mail", smtp_mail },
  { "rcpt", smtp_rcpt },
  { "data", smtp_data },
  { "rset", smtp_rset },
  { "quit", smtp_quit },
  { "auth", smtp_auth },
  { "starttls", smtp_starttls },
  { "bdat", smtp_unimplemented },
};

/* Verb up to the first space, argument after the spaces (as qmail-smtpd);
 * a verb not in the table goes to prog as it is. */
static void dispatch(const stralloc *line)
{
  static stralloc arg;
  size_t v = 0, i;
  while (v < line->len && line->s[v] != ' ') ++v;
  for (i = v; i < line->len && line->s[i] == ' '; ++i) {}
  if (!stralloc_copyb(&arg, line->s + i, line->len - i)) die_nomem();
  for (size_t c = 0; c < sizeof commands / sizeof *commands; ++c) {
    const char *verb = commands[c].verb ? commands[c].verb : settings.keyword;
    if (strlen(verb) == v && !strncasecmp(line->s, verb, v)) {
      commands[c].fn(line, &arg);
      return;
    }
  }
  smtp_forward(line, &arg);
}

/* One command from the client: the proxy's own refusals of a malformed line,
 * else the command. */
static void command_next(void)
{
  static stralloc line;
  if (prog_last_code() == 421) session_end(0, -1);   /* prog is closing */
  switch (client_line(&line, LINE_MAX_COMMAND)) {
    case LINE_EOF: session_end(0, -1);
    case LINE_TOO_LONG: client_out("500 5.5.2 line too long\r\n"); return;
    case LINE_OK: break;
  }
  if (memchr(line.s, '\0', line.len)) client_out("500 5.5.2 NUL in command\r\n");
  else if (memchr(line.s, '\r', line.len)) client_out("500 5.5.2 bare CR in command\r\n");
  else dispatch(&line);
}

/* The session is over: the last words to the client, the policy stopped,
 * prog sees EOF and finishes; leave with its exit status. */
static void finish(const char *last_words, int code)
{
  if (last_words) client_out(last_words);
  client_flush();
  policy_end();
  int status = prog_finish(10 * 1000);
  _exit(code >= 0 ? code : status);
}

/* The policy's log lines and the queue wrapper's carry this pid too. */
static void identify(void)
{
  static char tag[32];
  snprintf(tag, sizeof tag, "%d", (int)getpid());
  setenv("IDCHECK_PID", tag, 1);
  snprintf(tag, sizeof tag, "pid %d", (int)getpid());
  log_tag(tag);
}

/* The wrapper between prog and the real queue, and the channel it asks on.
 * A session that skips the policy from the start, without TLS, has nothing
 * to carry out: qmail-smtpd keeps its own queue program. */
static void queue_wrap(void)
{
  const char *wrapper = sibling_path("qmail-idcheck-queue", "IDCHECK_QUEUEPROG", IDCHECK_BINDIR);
  const char *queue = getenv("IDCHECK_QUEUE");
  const char *qq = getenv("QMAILQUEUE");
  if (!queue || !*queue)
    queue = (qq && *qq && strcmp(qq, wrapper)) ? qq : "/var/qmail/bin/qmail-queue";
  if (!queue_channel_make() || setenv("IDCHECK_QUEUE", queue, 1) < 0
      || setenv("QMAILQUEUE", wrapper, 1) < 0)
    session_end("421 4.3.0 cannot set up the queue channel\r\n", 111);
}

int main(int argc, char **argv)
{
  if (argc < 2) dieusage(USAGE);
  signal(SIGPIPE, SIG_IGN);
  identify();
  session_end_register(finish);
  settings_read();
  session.skip_policy = settings.skip_policy;
  client_start(0, 1, settings.timeout_ms);
  tls_setup();
  if (!settings.skip_policy || tls_possible()) queue_wrap();
  prog_start(argv + 1, settings.timeout_ms);
  queue_channel_keep_own_end();   /* prog and its wrappers hold the far end */

  prog_reply();                   /* the greeting, or prog's refusal */
  client_out_sa(prog_reply_text());
  for (;;) command_next();
}
