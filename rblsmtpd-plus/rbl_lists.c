#include "rbl_lists.h"
#include <stdlib.h>
#include <string.h>
#include "ip4.h"
#include "rbl_numbers.h"

int rbl_lists_add(struct rbl_lists *ls, const char *spec, int allow, int bounce, int failclosed)
{
  const char *at = strrchr(spec, '@');
  const char *colon = strchr(spec, ':');
  unsigned int len = (unsigned int)strlen(spec);
  struct rbl_list l, *grown;

  if (ls->n >= RBL_LISTS_MAX) return 0;
  memset(&l, 0, sizeof l);
  l.allow = allow;
  l.bounce = bounce;
  l.failclosed = failclosed;
  l.weight = 1;
  if (at) {
    if (allow || (colon && colon > at)) return 0;
    if (!rbl_scan_ulong(at + 1, RBL_WEIGHT_MAX, &l.weight)) return 0;
    len = (unsigned int)(at - spec);
  }
  l.base = spec;
  l.baselen = colon ? (unsigned int)(colon - spec) : len;
  if (!l.baselen || memchr(spec, '@', l.baselen)) return 0;
  if (colon && !rbl_codes_parse(&l.codes, colon + 1, len - l.baselen - 1)) return 0;

  grown = realloc(ls->list, (ls->n + 1) * sizeof *grown);
  if (!grown) return -1;
  ls->list = grown;
  ls->list[ls->n++] = l;
  return 1;
}

/* ---- asking ---- */

static int decided(void *ls)
{
  return rbl_judge(ls).verdict != RBL_UNDECIDED;
}

int rbl_lists_look_up(struct rbl_lists *ls, const struct rbl_client *c,
                      const char *servers, deadline_t deadline)
{
  struct rbl_query **qs = calloc(ls->n ? ls->n : 1, sizeof *qs);
  stralloc name = {0};
  int ok = qs != 0;

  for (unsigned int i = 0; ok && i < ls->n; ++i) {
    struct rbl_list *l = &ls->list[i];
    qs[i] = &l->q;
    l->q.state = RBL_Q_FAILED;
    if (!c->family || !servers) continue;
    ok = rbl_client_name(&name, c, l->base, l->baselen);
    if (ok) rbl_query_start(&l->q, servers, name.s, name.len, DNS_T_A);
  }
  if (ok) rbl_query_run(qs, ls->n, deadline, decided, ls);
  free(qs);
  stralloc_free(&name);
  return ok;
}

/* ---- deciding ---- */

const char *rbl_list_hit(const struct rbl_list *l)
{
  if (l->q.state != RBL_Q_ANSWERED) return 0;
  for (unsigned int i = 0; i + 4 <= l->q.result.len; i += 4)
    if (rbl_codes_match(&l->codes, l->q.result.s + i)) return l->q.result.s + i;
  return 0;
}

static int unanswered(const struct rbl_list *l)
{
  return l->q.state == RBL_Q_RUNNING || l->q.state == RBL_Q_IDLE;
}

struct rbl_judgement rbl_judge(const struct rbl_lists *ls)
{
  struct rbl_judgement j = { RBL_UNDECIDED, 0, 0 };
  unsigned long score = 0;
  int unknown = 0, failopen = 0;

  for (unsigned int i = 0; i < ls->n; ++i) {
    const struct rbl_list *l = &ls->list[i];
    if (!l->allow) continue;
    if (rbl_list_hit(l)) { j.verdict = RBL_ALLOW; return j; }
    if (unanswered(l)) unknown = 1;
    else if (l->q.state == RBL_Q_FAILED) {
      if (l->failclosed) j.mustnotbounce = 1;
      else failopen = 1;   /* rblsmtpd -C: "assume anti-listed" */
    }
  }
  if (unknown) return j;
  if (failopen) { j.verdict = RBL_ALLOW; return j; }
  for (unsigned int i = 0; i < ls->n; ++i) {
    const struct rbl_list *l = &ls->list[i];
    if (l->allow) continue;
    if (unanswered(l)) return j;
    if (ls->tagmode) continue;
    if (l->q.state == RBL_Q_FAILED) {
      j.mustnotbounce = 1;
      if (l->failclosed) { j.verdict = RBL_BLOCK_FAIL; return j; }
      continue;
    }
    if (rbl_list_hit(l)) {
      score += l->weight;
      if (!j.textlist && l->weight) j.textlist = l;
      if (score >= ls->threshold) { j.verdict = RBL_BLOCK_HITS; return j; }
    }
  }
  j.verdict = RBL_PASS;
  return j;
}

/* ---- telling ---- */

static const char *ip4_text(char buf[IP4_FMT], const char *ip)
{
  buf[fmt_ip4(buf, ip)] = 0;
  return buf;
}

int rbl_block_text(stralloc *text, const struct rbl_list *l, const struct rbl_client *c,
                   const char *servers, deadline_t deadline)
{
  struct rbl_query txt, *one = &txt;
  stralloc name = {0};
  char ip[IP4_FMT];
  int ok = 1;

  memset(&txt, 0, sizeof txt);   /* IDLE: not asked */
  if (servers && now_ms() < deadline) {   /* past it, an answer could not be used */
    ok = rbl_client_name(&name, c, l->base, l->baselen);
    if (ok) {
      rbl_query_start(&txt, servers, name.s, name.len, DNS_T_TXT);
      rbl_query_run(&one, 1, deadline, 0, 0);
    }
  }
  if (ok) {
    if (txt.state == RBL_Q_ANSWERED && txt.result.len)
      ok = stralloc_copy(text, &txt.result);
    else
      ok = stralloc_copys(text, "listed in ") && stralloc_catb(text, l->base, l->baselen)
           && stralloc_cats(text, " (") && stralloc_cats(text, ip4_text(ip, rbl_list_hit(l)))
           && stralloc_cats(text, ")");
  }
  stralloc_free(&txt.result);
  stralloc_free(&name);
  return ok;
}

static int cat_item(stralloc *sa, const struct rbl_list *l, const char *value)
{
  return (!sa->len || stralloc_cats(sa, ",")) && stralloc_catb(sa, l->base, l->baselen)
         && stralloc_cats(sa, "=") && stralloc_cats(sa, value);
}

int rbl_summarize(struct rbl_summary *s, const struct rbl_lists *ls, const struct rbl_client *c)
{
  char ip[IP4_FMT];

  for (unsigned int i = 0; i < ls->n; ++i) {
    const struct rbl_list *l = &ls->list[i];
    int hit = 0;
    if (l->q.state == RBL_Q_FAILED) {
      if (!cat_item(&s->errors, l, !c->family ? "noaddress" : l->q.timedout ? "timeout" : "fail"))
        return 0;
      continue;
    }
    if (l->q.state != RBL_Q_ANSWERED) continue;
    for (unsigned int j = 0; j + 4 <= l->q.result.len; j += 4) {
      const char *a = l->q.result.s + j;
      stralloc *to = 0;
      if (rbl_codes_match(&l->codes, a)) {
        to = l->allow ? &s->allow : &s->hits;
        hit = 1;
      } else if (rbl_code_is_error(a) || !rbl_code_is_loopback(a))
        to = &s->errors;
      if (to && !cat_item(to, l, ip4_text(ip, a))) return 0;
    }
    if (hit && !l->allow) s->score += l->weight;
  }
  return 1;
}
