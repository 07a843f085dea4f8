/* The lists of the command line (-r, -a): how each is written, asked, and
 * what their answers decide.
 *
 * rblsmtpd decides list by list in command-line order, first decision
 * wins; rbl_judge does the same on the answers gathered so far, except that
 * an allowlist counts wherever it stands and a block needs `threshold`
 * points. */
#ifndef RBL_LISTS_H
#define RBL_LISTS_H
#include "stralloc.h"
#include "deadline.h"
#include "rbl_client.h"
#include "rbl_codes.h"
#include "rbl_lookup.h"

#define RBL_LISTS_MAX 256
#define RBL_WEIGHT_MAX 1000000UL

struct rbl_list {
  const char *base;              /* as written, without :codes@weight */
  unsigned int baselen;
  int allow;                     /* -a */
  int bounce;                    /* -b in force at its place: 553 */
  int failclosed;                /* -c in force at its place */
  unsigned long weight;
  struct rbl_codes codes;
  struct rbl_query q;            /* the A records */
};

struct rbl_lists {
  struct rbl_list *list;
  unsigned int n;
  unsigned long threshold;       /* -s: points that block (1) */
  int tagmode;                   /* -e: hits never block */
};

/* spec: base[:codes][@weight] (the weight only for a list, allow 0), with
 * the -b and -c in force at its place. 1 added; 0 a bad spec, or more than
 * RBL_LISTS_MAX; -1 out of memory. spec must outlive the lists. */
int rbl_lists_add(struct rbl_lists *ls, const char *spec, int allow, int bounce, int failclosed);

/* Asks every list at once (A records) until the deadline, or until the
 * answers in decide (rbl_judge). Without a client address or a resolver
 * (servers 0) every list has failed. 1, or 0 out of memory. */
int rbl_lists_look_up(struct rbl_lists *ls, const struct rbl_client *c,
                      const char *servers, deadline_t deadline);

enum rbl_verdict { RBL_UNDECIDED, RBL_ALLOW, RBL_PASS, RBL_BLOCK_HITS, RBL_BLOCK_FAIL };

struct rbl_judgement {
  enum rbl_verdict verdict;      /* UNDECIDED while an answer that matters is missing */
  int mustnotbounce;             /* a lookup failed: 451, never 553 */
  const struct rbl_list *textlist;   /* BLOCK_HITS: the first list that hit with a weight */
};

struct rbl_judgement rbl_judge(const struct rbl_lists *ls);

/* The first address of l's answer that its codes accept, or 0. */
const char *rbl_list_hit(const struct rbl_list *l);

/* The words of a block by l: the TXT record of the client at l, asked
 * now, or "listed in base (code)" when it has none, it is malformed, or the
 * deadline comes first (then it is not asked). 1, or 0 out of memory. */
int rbl_block_text(stralloc *text, const struct rbl_list *l, const struct rbl_client *c,
                   const char *servers, deadline_t deadline);

/* What was seen, for prog's environment and the log: "base=code,..." of
 * the lists' hits, the allowlists' hits, and what could not be used
 * (timeout, fail, noaddress, or an error answer); score: the weights of the
 * lists that hit. */
struct rbl_summary { stralloc hits, allow, errors; unsigned long score; };

/* 1, or 0 out of memory. */
int rbl_summarize(struct rbl_summary *s, const struct rbl_lists *ls, const struct rbl_client *c);

#endif
