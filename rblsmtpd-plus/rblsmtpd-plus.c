/* rblsmtpd-plus: a drop-in for ucspi-tcp's rblsmtpd. Looks the client up in
 * DNS lists (A records decide, TXT only words the reply), all lists at once
 * under one deadline, then blocks it with rblsmtpd's dialogue, or runs prog
 * with the hits in the environment. See man/rblsmtpd-plus.1. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dns.h"
#include "stralloc.h"
#include "deadline.h"
#include "dns_seed.h"
#include "log.h"
#include "sanitize.h"
#include "rbl_client.h"
#include "rbl_dialogue.h"
#include "rbl_lists.h"
#include "rbl_numbers.h"

const char *PROG = "rblsmtpd-plus";
#define USAGE "rblsmtpd-plus [ -bBcCe ] [ -t timeout ] [ -w wait ] [ -s threshold ]" \
  " [ -g delay ] [ -r base[:codes][@weight] ] [ -a base[:codes] ] prog [ arg ... ]"

#define TEXT_MAX 200               /* rblsmtpd's cut */
#define WAIT_DEFAULT_MS 5000
#define TEMPFAIL_TEXT "temporary RBL lookup error"
#define EARLY_TALKER "554 rblsmtpd.local client talked before the greeting (#5.5.1)"

static struct rbl_lists lists = { 0, 0, 1, 0 };
static unsigned long dialogue_timeout = 60;   /* -t, seconds */
static int64_t wait_ms = WAIT_DEFAULT_MS;     /* -w */
static int64_t delay_ms;                      /* -g */
static int64_t started;

static const char *ip_env;                    /* TCPREMOTEIP as given */
static struct rbl_client client;
static char servers[256];
static int haveservers;
static stralloc who;                          /* "IP pid N: " */

/* ---- logs and exits ---- */

static void dienomem(void) { die(111, "fatal: out of memory", (char *)0); }

/* Every line about the client has rblsmtpd's form, "PROG: IP pid N: text",
 * the IP sanitized as tcpserver gave it. */
static void who_init(void)
{
  if (!sanitize_cats(&who, ip_env, 100) || !stralloc_cats(&who, " pid ")
      || !rbl_cat_ulong(&who, (unsigned long)getpid())
      || !stralloc_cats(&who, ": ") || !stralloc_0(&who))
    dienomem();
}

static void log_client(const char *text) { warn(who.s, text, (char *)0); }

/* A block is logged byte for byte as rblsmtpd logs it, program name
 * included, so that what watches rblsmtpd's log keeps working. */
static void log_as_rblsmtpd(const char *text)
{
  const char *self = PROG;
  PROG = "rblsmtpd";
  log_client(text);
  PROG = self;
}

/* ---- the command line ---- */

static void add_list(const char *spec, int allow, int bounce, int failclosed)
{
  switch (rbl_lists_add(&lists, spec, allow, bounce, failclosed)) {
    case 0: dieusage(USAGE);
    case -1: dienomem();
  }
}

static void scan_or_die(int ok) { if (!ok) dieusage(USAGE); }

/* -b -B -c -C apply to the lists written after them, as in rblsmtpd.
 * Returns prog's argv. */
static char **options(int argc, char **argv)
{
  int bounce = 0, failclosed = 0, opt;

  opterr = 0;
  while ((opt = getopt(argc, argv, "+bBcCet:r:a:s:w:g:")) != -1)
    switch (opt) {
      case 'b': bounce = 1; break;
      case 'B': bounce = 0; break;
      case 'c': failclosed = 1; break;
      case 'C': failclosed = 0; break;
      case 'e': lists.tagmode = 1; break;
      case 'r': add_list(optarg, 0, bounce, failclosed); break;
      case 'a': add_list(optarg, 1, bounce, failclosed); break;
      case 't': scan_or_die(rbl_scan_ulong(optarg, 86400UL * 365, &dialogue_timeout)); break;
      case 's': scan_or_die(rbl_scan_ulong(optarg, RBL_WEIGHT_MAX * RBL_LISTS_MAX, &lists.threshold)
                            && lists.threshold); break;
      case 'w': scan_or_die(rbl_scan_seconds(optarg, &wait_ms)); break;
      case 'g': scan_or_die(rbl_scan_seconds(optarg, &delay_ms)); break;
      default: dieusage(USAGE);
    }
  argv += optind;
  if (!*argv) dieusage(USAGE);
  return argv;
}

/* ---- the two ways out ---- */

/* rblsmtpd's dialogue with "451 text" or "553 text", the text sanitized
 * and cut as rblsmtpd does. */
static void __attribute__((noreturn)) block(int code553, const char *text, unsigned int len)
{
  stralloc m = {0};
  if (!stralloc_copys(&m, code553 ? "553 " : "451 ") || !sanitize_catb(&m, text, len, TEXT_MAX)
      || !stralloc_0(&m))
    dienomem();
  log_as_rblsmtpd(m.s);
  rbl_dialogue_block(m.s, m.len - 1, dialogue_timeout);
}

/* exec prog, once the greeting delay (from the start) is over */
static void __attribute__((noreturn)) pass(char **argv, int64_t delay)
{
  static const char early[] = EARLY_TALKER "\r\n";
  if (delay > 0)
    switch (rbl_wait_greeting(started + delay)) {
      case RBL_QUIET: break;
      case RBL_TALKED:
        log_client(EARLY_TALKER);
        rbl_dialogue_early_talker(early, sizeof early - 1);
      case RBL_LEFT:
        log_client("client left before the greeting");
        _exit(0);
    }
  execvp(argv[0], argv);
  die_sys(111, "fatal: unable to run ", argv[0], (char *)0);
}

/* ---- what prog is told ---- */

static void clear_env(void)
{
  unsetenv("RBLSMTPD_HITS");
  unsetenv("RBLSMTPD_SCORE");
  unsetenv("RBLSMTPD_ALLOW");
  unsetenv("RBLSMTPD_ERRORS");
}

static void set_env(const char *name, const stralloc *value)
{
  stralloc z = {0};
  if (!stralloc_copy(&z, value) || !stralloc_0(&z) || setenv(name, z.s, 1) == -1) dienomem();
  stralloc_free(&z);
}

/* $RBLSMTPD decides before any list, as in rblsmtpd: empty, pass;
 * "-text", 553 text; otherwise 451 with the value. */
static void __attribute__((noreturn)) decide_by_env(const char *forced, char **argv)
{
  clear_env();
  if (!*forced) pass(argv, 0);
  if (*forced == '-') block(1, forced + 1, (unsigned int)strlen(forced + 1));
  block(0, forced, (unsigned int)strlen(forced));
}

/* every list at once, under one deadline from the start */
static void look_up(void)
{
  if (!dns_seed()) die_sys(111, "fatal: unable to read random bytes", (char *)0);
  rbl_client_parse(&client, ip_env);
  haveservers = dns_resolvconfip(servers) == 0;
  if (!rbl_lists_look_up(&lists, &client, haveservers ? servers : 0, started + wait_ms))
    dienomem();
}

/* the reply's words: the TXT record of the first list that hit */
static void __attribute__((noreturn)) block_listed(const struct rbl_judgement *j)
{
  stralloc text = {0};
  if (!rbl_block_text(&text, j->textlist, &client, haveservers ? servers : 0, started + wait_ms))
    dienomem();
  block(j->textlist->bounce && !j->mustnotbounce, text.s, text.len);
}

/* RBLSMTPD_* for prog, and the decision's log line */
static void report(enum rbl_verdict v)
{
  struct rbl_summary s = { {0}, {0}, {0}, 0 };
  stralloc score = {0}, line = {0};

  if (!rbl_summarize(&s, &lists, &client) || !rbl_cat_ulong(&score, s.score)) dienomem();
  set_env("RBLSMTPD_HITS", &s.hits);
  set_env("RBLSMTPD_SCORE", &score);
  set_env("RBLSMTPD_ALLOW", &s.allow);
  set_env("RBLSMTPD_ERRORS", &s.errors);

  if (!stralloc_copys(&line, v == RBL_ALLOW ? "allow" : lists.tagmode ? "tag" : "pass")
      || !stralloc_cats(&line, " score=") || !stralloc_cat(&line, &score)
      || !stralloc_cats(&line, "/") || !rbl_cat_ulong(&line, lists.threshold)
      || (s.hits.len && (!stralloc_cats(&line, " hits=") || !stralloc_cat(&line, &s.hits)))
      || (s.allow.len && (!stralloc_cats(&line, " allow=") || !stralloc_cat(&line, &s.allow)))
      || (s.errors.len && (!stralloc_cats(&line, " errors=") || !stralloc_cat(&line, &s.errors)))
      || !stralloc_cats(&line, " ms=") || !rbl_cat_ulong(&line, (unsigned long)(now_ms() - started))
      || !stralloc_0(&line))
    dienomem();
  log_client(line.s);
}

int main(int argc, char **argv)
{
  const char *forced = getenv("RBLSMTPD");
  struct rbl_judgement j;

  started = now_ms();
  ip_env = getenv("TCPREMOTEIP");
  if (!ip_env) ip_env = "";
  argv = options(argc, argv);
  who_init();

  if (forced) decide_by_env(forced, argv);
  if (!lists.n) {
    clear_env();
    pass(argv, delay_ms);
  }

  look_up();
  j = rbl_judge(&lists);
  if (j.verdict == RBL_BLOCK_FAIL) block(0, TEMPFAIL_TEXT, sizeof TEMPFAIL_TEXT - 1);
  if (j.verdict == RBL_BLOCK_HITS) block_listed(&j);

  report(j.verdict);   /* ALLOW or PASS; tag mode always ends here */
  pass(argv, j.verdict == RBL_ALLOW ? 0 : delay_ms);
}
