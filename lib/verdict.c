#include "verdict.h"
#include "header_fold.h"
#include "sanitize.h"
#include <stdio.h>

/* class.subject.detail, class matching the reply code (RFC 3463) */
static int xcode_valid(const char *s, size_t len, int code)
{
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

/* What is wrong with the headers, or 0. */
static const char *headers_problem(const struct policy_verdict *v)
{
  static stralloc folded;
  size_t pos = 0, bytes = 0, ll, tl;
  const char *l, *t;
  while (wire_header_next(v, &pos, &l, &ll, &t, &tl) == 1) {
    if (!header_label_valid(l, ll)) return "invalid header label";
    if (!header_text_valid(t, tl)) return "control character in header text";
    if ((bytes += ll + tl) > VERDICT_HEADER_BYTES_MAX) return "headers too long";
    folded.len = 0;
    if (!header_fold(&folded, l, ll, t, tl)) return "header word too long to fold";
  }
  return 0;
}

int verdict_check(struct policy_verdict *v, stralloc *why)
{
  /* only VERDICT_TEXT_MAX bytes ever reach the client: a longer text would
   * only grow the log and the datagram to the queue wrapper */
  if (v->text.len > VERDICT_TEXT_MAX) v->text.len = VERDICT_TEXT_MAX;
  if (v->action == ACT_FAULT) return stralloc_copy(why, &v->text) ? 0 : -1;
  const char *reason = 0;
  if (v->action == ACT_NONE) reason = "unknown action";
  else if (v->action == ACT_REJECT && (v->code < 500 || v->code > 599))
    reason = "REJECT needs a 5xx reply";
  else if (v->action == ACT_TEMPFAIL && (v->code < 400 || v->code > 499))
    reason = "TEMPFAIL needs a 4xx reply";
  else if (v->code && (v->code < 200 || v->code > 599)) reason = "reply code out of range";
  else if (!xcode_valid(v->xcode.s, v->xcode.len, v->code)) reason = "malformed enhanced status code";
  else if (v->nheaders > VERDICT_HEADERS_MAX) reason = "too many headers";
  else reason = headers_problem(v);
  if (!reason) return 1;
  return stralloc_copys(why, reason) ? 0 : -1;
}

int verdict_is_final(enum policy_action a)
{
  return a == ACT_ACCEPT || a == ACT_FILTER || a == ACT_DISCARD;
}

int verdict_reply(const struct policy_verdict *v, stralloc *out)
{
  char num[8];
  snprintf(num, sizeof num, "%03d ", v->code);
  if (!stralloc_copys(out, num)) return 0;
  if (v->xcode.len && (!sanitize_catb(out, v->xcode.s, v->xcode.len, 16) || !stralloc_cats(out, " ")))
    return 0;
  return sanitize_catb(out, v->text.s, v->text.len, VERDICT_TEXT_MAX)
      && stralloc_catb(out, "\r\n", 2);
}

void verdict_reset(struct policy_verdict *v)
{
  v->action = ACT_NONE;
  v->code = 0;
  v->xcode.len = v->text.len = v->headers.len = 0;
  v->nheaders = 0;
}

int verdict_copy(struct policy_verdict *to, const struct policy_verdict *from)
{
  to->action = from->action;
  to->code = from->code;
  to->nheaders = from->nheaders;
  return stralloc_copy(&to->xcode, &from->xcode) && stralloc_copy(&to->text, &from->text)
      && stralloc_copy(&to->headers, &from->headers);
}
