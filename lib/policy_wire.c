#include "policy_wire.h"
#include "netstring.h"
#include <string.h>

static const char *const action_names[] = {
  "", "ACCEPT", "REJECT", "FILTER", "CONTINUE", "TEMPFAIL", "DISCARD", "FAULT"
};

const char *policy_action_name(enum policy_action a)
{
  if ((unsigned)a >= sizeof action_names / sizeof *action_names) return "";
  return action_names[a];
}

enum policy_action policy_action_parse(const char *s, size_t len)
{
  for (size_t i = 1; i < sizeof action_names / sizeof *action_names; ++i)
    if (strlen(action_names[i]) == len && !memcmp(action_names[i], s, len))
      return (enum policy_action)i;
  return ACT_NONE;
}

int wire_request_begin(stralloc *out, size_t *frame_mark, int nargs)
{
  char n[2] = { (char)('0' + nargs), 0 };
  *frame_mark = netstring_open(out);
  return *frame_mark != (size_t)-1 && netstring_cats(out, WIRE_MAGIC)
      && netstring_cats(out, n);
}

int wire_put_opt(stralloc *out, const char *s, size_t len, int present)
{
  if (!present) return netstring_catb(out, "-", 1);
  size_t mark = netstring_open(out);
  return mark != (size_t)-1 && stralloc_catb(out, "+", 1)
      && stralloc_catb(out, s, len) && netstring_close(out, mark);
}

int wire_request_end(stralloc *out, size_t frame_mark)
{
  return netstring_close(out, frame_mark);
}

int wire_hello_encode(stralloc *out, const char *client, size_t len, int present)
{
  size_t start = out->len;
  size_t frame = netstring_open(out);
  if (frame == (size_t)-1 || !netstring_cats(out, WIRE_HELLO_MAGIC)
      || !wire_put_opt(out, client, len, present) || !netstring_close(out, frame))
    return 0;
  if (out->len - start > WIRE_MAX_HELLO) { out->len = start; return 0; }
  return 1;
}

int wire_hello_decode(const char *buf, size_t len, const char **client, size_t *clen,
                      int *present)
{
  const char *f[2];
  size_t fl[2], pos = 0;
  for (int i = 0; i < 2; ++i)
    if (netstring_next(buf, len, &pos, &f[i], &fl[i]) != 1) return 0;
  if (pos != len) return 0;
  if (fl[0] != strlen(WIRE_HELLO_MAGIC) || memcmp(f[0], WIRE_HELLO_MAGIC, fl[0])) return 0;
  if (fl[1] == 1 && f[1][0] == '-') { *present = 0; *client = 0; *clen = 0; return 1; }
  if (fl[1] < 1 || f[1][0] != '+') return 0;
  *present = 1;
  *client = f[1] + 1;
  *clen = fl[1] - 1;
  return 1;
}

static int parse_code(const char *s, size_t len, int *code)
{
  int v = 0;
  if (len > 3) return 0;
  for (size_t i = 0; i < len; ++i) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (s[i] - '0');
  }
  *code = v;
  return 1;
}

int wire_reply_decode(const char *buf, size_t len, struct policy_verdict *v)
{
  const char *f[7];
  size_t fl[7], pos = 0;
  int n = 0;
  while (n < 7 && pos < len)
    if (netstring_next(buf, len, &pos, &f[n], &fl[n]) != 1) return 0;
    else ++n;
  if (pos != len || n < 6) return 0;
  if (n == 6) { f[6] = ""; fl[6] = 0; }
  if (fl[0] != strlen(WIRE_MAGIC) || memcmp(f[0], WIRE_MAGIC, fl[0])) return 0;
  v->action = policy_action_parse(f[1], fl[1]);   /* ACT_NONE: unknown, a fault */
  if (!parse_code(f[2], fl[2], &v->code)) return 0;
  if (!stralloc_copyb(&v->xcode, f[3], fl[3])) return 0;
  if (!stralloc_copyb(&v->text, f[4], fl[4])) return 0;
  if (!stralloc_copyb(&v->headers, f[5], fl[5])) return 0;
  if (!stralloc_copyb(&v->edits, f[6], fl[6])) return 0;
  v->nheaders = v->nedits = 0;
  size_t hp = 0, ll, tl, wl, nl;
  const char *l, *t, *w, *nm;
  int r;
  while ((r = wire_header_next(v, &hp, &l, &ll, &t, &tl)) == 1) ++v->nheaders;
  if (r != 0) return 0;
  hp = 0;
  while ((r = wire_edit_next(v, &hp, &w, &wl, &nm, &nl, &l, &ll)) == 1) ++v->nedits;
  return r == 0;
}

int wire_edit_next(const struct policy_verdict *v, size_t *pos,
                   const char **where, size_t *wlen, const char **name, size_t *nlen,
                   const char **label, size_t *llen)
{
  const char *item;
  size_t ilen, ip = 0;
  int r = netstring_next(v->edits.s, v->edits.len, pos, &item, &ilen);
  if (r != 1) return r;
  if (netstring_next(item, ilen, &ip, where, wlen) != 1
      || netstring_next(item, ilen, &ip, name, nlen) != 1
      || netstring_next(item, ilen, &ip, label, llen) != 1)
    return -1;
  return ip == ilen ? 1 : -1;
}

int wire_edit_cat(stralloc *edits, const char *where, size_t wlen, const char *name,
                  size_t nlen, const char *label, size_t llen)
{
  size_t mark = netstring_open(edits);
  return mark != (size_t)-1 && netstring_catb(edits, where, wlen)
      && netstring_catb(edits, name, nlen) && netstring_catb(edits, label, llen)
      && netstring_close(edits, mark);
}

int wire_header_next(const struct policy_verdict *v, size_t *pos,
                     const char **label, size_t *llen,
                     const char **text, size_t *tlen)
{
  const char *item;
  size_t ilen, ip = 0;
  int r = netstring_next(v->headers.s, v->headers.len, pos, &item, &ilen);
  if (r != 1) return r;
  if (netstring_next(item, ilen, &ip, label, llen) != 1) return -1;
  if (netstring_next(item, ilen, &ip, text, tlen) != 1) return -1;
  return ip == ilen ? 1 : -1;
}

int wire_reply_encode(stralloc *out, const struct policy_verdict *v)
{
  char code[8] = "";
  size_t frame = netstring_open(out);
  if (v->code > 0 && v->code < 1000) {
    code[0] = (char)('0' + v->code / 100);
    code[1] = (char)('0' + v->code / 10 % 10);
    code[2] = (char)('0' + v->code % 10);
    code[3] = 0;
  }
  return frame != (size_t)-1 && netstring_cats(out, WIRE_MAGIC)
      && netstring_cats(out, policy_action_name(v->action))
      && netstring_cats(out, code)
      && netstring_catb(out, v->xcode.s, v->xcode.len)
      && netstring_catb(out, v->text.s, v->text.len)
      && netstring_catb(out, v->headers.s, v->headers.len)
      && (!v->edits.len || netstring_catb(out, v->edits.s, v->edits.len))
      && netstring_close(out, frame);
}

void policy_verdict_free(struct policy_verdict *v)
{
  stralloc_free(&v->xcode);
  stralloc_free(&v->text);
  stralloc_free(&v->headers);
  stralloc_free(&v->edits);
}
