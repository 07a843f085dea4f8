/* rblsmtpd-plus: a drop-in for ucspi-tcp's rblsmtpd. Looks the client up in
 * DNS lists (A records decide, TXT only words the reply), all lists at once
 * under one deadline, then blocks it with rblsmtpd's dialogue, or runs prog
 * with the hits in the environment. See man/rblsmtpd-plus.1. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dns.h"
#include "stralloc.h"
#include "deadline.h"
#include "sanitize.h"
#include "rbl_client.h"
#include "rbl_codes.h"
#include "rbl_dialogue.h"
#include "rbl_lookup.h"
#include "dns_seed.h"

#define PROG "rblsmtpd-plus"
#define USAGE "rblsmtpd-plus [ -bBcCe ] [ -t timeout ] [ -w wait ] [ -s threshold ]" \
  " [ -g delay ] [ -r base[:codes][@weight] ] [ -a base[:codes] ] prog [ arg ... ]"

#define TEXT_MAX 200               /* rblsmtpd's cut */
#define WEIGHT_MAX 1000000UL
#define WAIT_DEFAULT_MS 5000
#define TEMPFAIL_TEXT "temporary RBL lookup error"
#define EARLY_TALKER_REPLY "554 rblsmtpd.local client talked before the greeting (#5.5.1)\r\n"

struct list {
  const char *base;              /* as written, without :codes@weight */
  unsigned int baselen;
  int allow;                     /* -a */
  int bounce;                    /* -b in force at its place: 553 */
  int failclosed;                /* -c in force at its place */
  unsigned long weight;
  struct rbl_codes codes;
  struct rbl_query q;
};

enum verdict { UNDECIDED, ALLOW, PASS, BLOCK_HITS, BLOCK_FAIL };

static struct list *lists;
static unsigned int nlists;
static unsigned long threshold = 1;
static int tagmode;
static const char *ip_env;
static struct rbl_client client;
static int64_t started;

/* ---- exits and logs ---- */

static void log_line(const char *who, const char *what, unsigned int len)
{
  stralloc line = {0};
  char num[24];
  unsigned int n = 0;
  unsigned long pid = (unsigned long)getpid();

  do num[sizeof num - 1 - n++] = (char)('0' + pid % 10); while ((pid /= 10) && n < sizeof num);
  if (stralloc_cats(&line, who) && stralloc_cats(&line, ": ")
      && sanitize_cats(&line, ip_env, 100) && stralloc_cats(&line, " pid ")
      && stralloc_catb(&line, num + sizeof num - n, n) && stralloc_cats(&line, ": ")
      && stralloc_catb(&line, what, len) && stralloc_cats(&line, "\n"))
    write_all_deadline(2, line.s, line.len, deadline_in(10000));
  stralloc_free(&line);
}

static void die(int code, const char *a, const char *b, const char *c, const char *d)
{
  stralloc m = {0};
  if (stralloc_copys(&m, PROG ": ") && stralloc_cats(&m, a) && (!b || stralloc_cats(&m, b))
      && (!c || stralloc_cats(&m, c)) && (!d || stralloc_cats(&m, d)) && stralloc_cats(&m, "\n"))
    write_all_deadline(2, m.s, m.len, deadline_in(10000));
  _exit(code);
}

static void dieusage(void) { die(100, "usage: ", USAGE, 0, 0); }
static void dienomem(void) { die(111, "fatal: ", "out of memory", 0, 0); }

/* ---- the command line ---- */

static int scan_number(const char *s, unsigned long max, unsigned long *out)
{
  unsigned long v = 0;
  if (!*s) return 0;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return 0;
    v = v * 10 + (unsigned long)(*s - '0');
    if (v > max) return 0;
  }
  *out = v;
  return 1;
}

/* seconds, with up to three decimals: "5", "0.25" -> milliseconds */
static int scan_seconds(const char *s, int64_t *ms)
{
  int64_t v = 0, scale = 1000;
  const char *p = s;
  if (!*p) return 0;
  for (; *p >= '0' && *p <= '9'; ++p) {
    v = v * 10 + (*p - '0');
    if (v > 86400) return 0;
  }
  v *= 1000;
  if (*p == '.') {
    ++p;
    if (!*p) return 0;
    for (; *p >= '0' && *p <= '9'; ++p) {
      scale /= 10;
      if (!scale) return 0;
      v += (*p - '0') * scale;
    }
  }
  if (*p || p == s) return 0;
  *ms = v;
  return 1;
}

/* base[:codes][@weight] (the weight only for -r) */
static void add_list(const char *spec, int allow, int bounce, int failclosed)
{
  struct list *l;
  const char *at = strrchr(spec, '@');
  const char *colon = strchr(spec, ':');
  unsigned int len = (unsigned int)strlen(spec);

  if (nlists >= 256) dieusage();
  l = realloc(lists, (nlists + 1) * sizeof *lists);
  if (!l) dienomem();
  lists = l;
  l = &lists[nlists];
  memset(l, 0, sizeof *l);
  l->allow = allow;
  l->bounce = bounce;
  l->failclosed = failclosed;
  l->weight = 1;
  if (at) {
    if (allow) dieusage();
    if (colon && colon > at) dieusage();
    if (!scan_number(at + 1, WEIGHT_MAX, &l->weight)) dieusage();
    len = (unsigned int)(at - spec);
  }
  l->base = spec;
  l->baselen = colon ? (unsigned int)(colon - spec) : len;
  if (!l->baselen || memchr(spec, '@', l->baselen)) dieusage();
  if (colon && !rbl_codes_parse(&l->codes, colon + 1, len - l->baselen - 1)) dieusage();
  ++nlists;
}

/* ---- results ---- */

static int has_hit(const struct list *l)
{
  if (l->q.state != RBL_Q_ANSWERED) return 0;
  for (unsigned int i = 0; i + 4 <= l->q.result.len; i += 4)
    if (rbl_codes_match(&l->codes, l->q.result.s + i)) return 1;
  return 0;
}

static int running(const struct list *l)
{
  return l->q.state == RBL_Q_RUNNING || l->q.state == RBL_Q_IDLE;
}

/* rblsmtpd decides list by list in command-line order, first decision
 * wins; this does the same on the answers gathered so far, except that an
 * allowlist counts wherever it stands and a block needs `threshold`
 * points. UNDECIDED while an answer that matters is still missing. */
static enum verdict judge(int *mustnotbounce, struct list **textlist)
{
  unsigned long score = 0;
  int unknown = 0, failopen = 0;

  *mustnotbounce = 0;
  *textlist = 0;
  for (unsigned int i = 0; i < nlists; ++i) {
    struct list *l = &lists[i];
    if (!l->allow) continue;
    if (has_hit(l)) return ALLOW;
    if (running(l)) unknown = 1;
    else if (l->q.state == RBL_Q_FAILED) {
      if (l->failclosed) *mustnotbounce = 1;
      else failopen = 1;   /* rblsmtpd -C: "assume anti-listed" */
    }
  }
  if (unknown) return UNDECIDED;
  if (failopen) return ALLOW;
  for (unsigned int i = 0; i < nlists; ++i) {
    struct list *l = &lists[i];
    if (l->allow) continue;
    if (running(l)) return UNDECIDED;
    if (tagmode) continue;
    if (l->q.state == RBL_Q_FAILED) {
      *mustnotbounce = 1;
      if (l->failclosed) return BLOCK_FAIL;
      continue;
    }
    if (has_hit(l)) {
      score += l->weight;
      if (!*textlist && l->weight) *textlist = l;
      if (score >= threshold) return BLOCK_HITS;
    }
  }
  return PASS;
}

static int decided(void *unused)
{
  int mnb;
  struct list *tl;
  (void)unused;
  return judge(&mnb, &tl) != UNDECIDED;
}

static int cat_ip4(stralloc *sa, const char *ip)
{
  char num[16];
  unsigned int n = 0;
  for (int i = 0; i < 4; ++i) {
    unsigned int v = (unsigned char)ip[i];
    if (i) num[n++] = '.';
    if (v >= 100) num[n++] = (char)('0' + v / 100);
    if (v >= 10) num[n++] = (char)('0' + v / 10 % 10);
    num[n++] = (char)('0' + v % 10);
  }
  return stralloc_catb(sa, num, n);
}

static int cat_ulong(stralloc *sa, unsigned long v)
{
  char num[24];
  unsigned int n = 0;
  do num[sizeof num - 1 - n++] = (char)('0' + v % 10); while ((v /= 10) && n < sizeof num);
  return stralloc_catb(sa, num + sizeof num - n, n);
}

static int cat_item(stralloc *sa, const struct list *l, const char *value, const char *ip)
{
  if (sa->len && !stralloc_cats(sa, ",")) return 0;
  if (!stralloc_catb(sa, l->base, l->baselen) || !stralloc_cats(sa, "=")) return 0;
  return ip ? cat_ip4(sa, ip) : stralloc_cats(sa, value);
}

/* The summaries for the environment and the log: "list=code,...". */
struct summary { stralloc hits, allow, errors; unsigned long score; };

static void summarize(struct summary *s)
{
  for (unsigned int i = 0; i < nlists; ++i) {
    const struct list *l = &lists[i];
    if (l->q.state == RBL_Q_FAILED) {
      if (!cat_item(&s->errors, l, client.family ? (l->q.timedout ? "timeout" : "fail") : "noaddress", 0))
        dienomem();
      continue;
    }
    if (l->q.state != RBL_Q_ANSWERED) continue;
    int hit = 0;
    for (unsigned int j = 0; j + 4 <= l->q.result.len; j += 4) {
      const char *ip = l->q.result.s + j;
      if (rbl_codes_match(&l->codes, ip)) {
        if (!cat_item(l->allow ? &s->allow : &s->hits, l, 0, ip)) dienomem();
        hit = 1;
      } else if (rbl_code_is_error(ip) || !rbl_code_is_loopback(ip)) {
        if (!cat_item(&s->errors, l, 0, ip)) dienomem();
      }
    }
    if (hit && !l->allow) s->score += l->weight;
  }
}

static void set_env(const char *name, const stralloc *value)
{
  stralloc z = {0};
  if (!stralloc_copy(&z, value) || !stralloc_0(&z)) dienomem();
  if (setenv(name, z.s, 1) == -1) dienomem();
  stralloc_free(&z);
}

static void clear_env(void)
{
  unsetenv("RBLSMTPD_HITS");
  unsetenv("RBLSMTPD_SCORE");
  unsetenv("RBLSMTPD_ALLOW");
  unsetenv("RBLSMTPD_ERRORS");
}

/* ---- the two ways out ---- */

static unsigned long dialogue_timeout = 60;

static void run_block(int code553, const char *text, unsigned int len)
{
  stralloc m = {0};
  if (!stralloc_copys(&m, code553 ? "553 " : "451 ")) dienomem();
  if (!sanitize_catb(&m, text, len, TEXT_MAX)) dienomem();
  log_line("rblsmtpd", m.s, m.len);
  rbl_dialogue_block(m.s, m.len, dialogue_timeout);
}

static void run_prog(char **argv, int64_t delay_ms)
{
  if (delay_ms > 0) {
    switch (rbl_wait_greeting(started + delay_ms)) {
      case RBL_QUIET: break;
      case RBL_TALKED: {
        static const char reply[] = EARLY_TALKER_REPLY;
        log_line(PROG, reply, sizeof reply - 3);
        rbl_dialogue_early_talker(reply, sizeof reply - 1);
      }
      case RBL_LEFT:
        log_line(PROG, "client left before the greeting", 31);
        _exit(0);
    }
  }
  execvp(argv[0], argv);
  die(111, "fatal: unable to run ", argv[0], ": ", strerror(errno));
}

int main(int argc, char **argv)
{
  const char *forced = getenv("RBLSMTPD");
  int bounce = 0, failclosed = 0, opt;
  int64_t wait_ms = WAIT_DEFAULT_MS, delay_ms = 0;

  started = now_ms();
  ip_env = getenv("TCPREMOTEIP");
  if (!ip_env) ip_env = "";

  opterr = 0;
  while ((opt = getopt(argc, argv, "+bBcCet:r:a:s:w:g:")) != -1)
    switch (opt) {
      case 'b': bounce = 1; break;
      case 'B': bounce = 0; break;
      case 'c': failclosed = 1; break;
      case 'C': failclosed = 0; break;
      case 'e': tagmode = 1; break;
      case 't': if (!scan_number(optarg, 86400UL * 365, &dialogue_timeout)) dieusage(); break;
      case 'r': add_list(optarg, 0, bounce, failclosed); break;
      case 'a': add_list(optarg, 1, bounce, failclosed); break;
      case 's': if (!scan_number(optarg, WEIGHT_MAX * 256, &threshold) || !threshold) dieusage(); break;
      case 'w': if (!scan_seconds(optarg, &wait_ms)) dieusage(); break;
      case 'g': if (!scan_seconds(optarg, &delay_ms)) dieusage(); break;
      default: dieusage();
    }
  argv += optind;
  if (!*argv) dieusage();

  /* $RBLSMTPD decides before any list, as in rblsmtpd */
  if (forced) {
    clear_env();
    if (!*forced) run_prog(argv, 0);
    if (*forced == '-') run_block(1, forced + 1, (unsigned int)strlen(forced + 1));
    run_block(0, forced, (unsigned int)strlen(forced));
  }
  if (!nlists) {
    clear_env();
    run_prog(argv, delay_ms);
  }

  /* every list at once */
  {
    char servers[256];
    struct rbl_query **qs = calloc(nlists, sizeof *qs);
    stralloc name = {0};
    int haveservers;

    if (!qs) dienomem();
    if (!dns_seed()) die(111, "fatal: ", "unable to read random bytes: ", strerror(errno), 0);
    rbl_client_parse(&client, ip_env);
    haveservers = dns_resolvconfip(servers) == 0;
    for (unsigned int i = 0; i < nlists; ++i) {
      struct list *l = &lists[i];
      qs[i] = &l->q;
      l->q.state = RBL_Q_FAILED;
      if (!client.family || !haveservers) continue;
      if (!rbl_client_name(&name, &client, l->base, l->baselen)) dienomem();
      rbl_query_start(&l->q, servers, name.s, name.len, DNS_T_A);
    }
    rbl_query_run(qs, nlists, started + wait_ms, decided, 0);
    free(qs);

    int mustnotbounce;
    struct list *textlist;
    enum verdict v = judge(&mustnotbounce, &textlist);

    if (v == BLOCK_FAIL) run_block(0, TEMPFAIL_TEXT, sizeof TEMPFAIL_TEXT - 1);
    if (v == BLOCK_HITS) {
      /* the reply's words: the TXT record of the first list that hit */
      struct rbl_query txt = {0};
      struct rbl_query *one = &txt;
      stralloc text = {0};

      if (!rbl_client_name(&name, &client, textlist->base, textlist->baselen)) dienomem();
      rbl_query_start(&txt, servers, name.s, name.len, DNS_T_TXT);
      rbl_query_run(&one, 1, started + wait_ms, 0, 0);
      if (txt.state == RBL_Q_ANSWERED && txt.result.len) {
        if (!stralloc_copy(&text, &txt.result)) dienomem();
      } else {
        unsigned int j;
        for (j = 0; j + 4 <= textlist->q.result.len; j += 4)
          if (rbl_codes_match(&textlist->codes, textlist->q.result.s + j)) break;
        if (!stralloc_copys(&text, "listed in ") || !stralloc_catb(&text, textlist->base, textlist->baselen)
            || !stralloc_cats(&text, " (") || !cat_ip4(&text, textlist->q.result.s + j)
            || !stralloc_cats(&text, ")"))
          dienomem();
      }
      run_block(textlist->bounce && !mustnotbounce, text.s, text.len);
    }

    /* ALLOW or PASS (tag mode always ends here): tell prog what was seen */
    struct summary s = {{0}, {0}, {0}, 0};
    stralloc line = {0}, score = {0};
    summarize(&s);
    if (!cat_ulong(&score, s.score)) dienomem();
    set_env("RBLSMTPD_HITS", &s.hits);
    set_env("RBLSMTPD_SCORE", &score);
    set_env("RBLSMTPD_ALLOW", &s.allow);
    set_env("RBLSMTPD_ERRORS", &s.errors);

    if (!stralloc_copys(&line, v == ALLOW ? "allow" : tagmode ? "tag" : "pass")
        || !stralloc_cats(&line, " score=") || !stralloc_cat(&line, &score)
        || !stralloc_cats(&line, "/") || !cat_ulong(&line, threshold)
        || (s.hits.len && (!stralloc_cats(&line, " hits=") || !stralloc_cat(&line, &s.hits)))
        || (s.allow.len && (!stralloc_cats(&line, " allow=") || !stralloc_cat(&line, &s.allow)))
        || (s.errors.len && (!stralloc_cats(&line, " errors=") || !stralloc_cat(&line, &s.errors)))
        || !stralloc_cats(&line, " ms=") || !cat_ulong(&line, (unsigned long)(now_ms() - started)))
      dienomem();
    log_line(PROG, line.s, line.len);
    run_prog(argv, v == ALLOW ? 0 : delay_ms);
  }
  return 111;
}
