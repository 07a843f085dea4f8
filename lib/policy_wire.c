#include "policy_wire.h"
#include "netstring.h"
#include <errno.h>
#include <string.h>

#define READ_CHUNK 65536
#define REQUEST_FIELDS 12

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

/* ---- frames on a descriptor ---- */

int wire_frame_parse(const char *buf, size_t len, struct wire_frame *f)
{
  size_t pos = 0;
  long frame = netstring_frame(buf, len, WIRE_MAX_FRAME);
  if (frame <= 0) return frame < 0 ? -1 : 0;
  f->len = (size_t)frame;
  return netstring_next(buf, f->len, &pos, &f->payload, &f->plen) == 1 ? 1 : -1;
}

enum wire_read wire_frame_read(int fd, stralloc *buf, deadline_t deadline,
                               struct wire_frame *f)
{
  for (;;) {
    int whole = wire_frame_parse(buf->s, buf->len, f);
    if (whole < 0) return WIRE_MALFORMED;
    if (whole) return WIRE_OK;
    if (!stralloc_readyplus(buf, READ_CHUNK)) return WIRE_NOMEM;
    ssize_t n = read_deadline(fd, buf->s + buf->len, READ_CHUNK, deadline);
    if (n > 0) { buf->len += (size_t)n; continue; }
    if (n == 0) return WIRE_EOF;
    return errno == ETIMEDOUT ? WIRE_TIMEOUT : WIRE_ERROR;
  }
}

enum wire_read wire_frame_read_one(int fd, stralloc *buf, deadline_t deadline,
                                   struct wire_frame *f)
{
  buf->len = 0;
  enum wire_read r = wire_frame_read(fd, buf, deadline, f);
  return r == WIRE_OK && f->len != buf->len ? WIRE_EXTRA : r;
}

/* ---- the request ---- */

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

static int opt_decode(const char *f, size_t len, struct wire_opt *o)
{
  if (len == 1 && f[0] == '-') {
    o->s = "";
    o->len = 0;
    o->present = 0;
    return 1;
  }
  if (len < 1 || f[0] != '+') return 0;
  o->s = f + 1;
  o->len = len - 1;
  o->present = 1;
  return 1;
}

/* Walk the whole list once, so later walks need no error handling. */
static int list_decode(const char *f, size_t len, struct wire_list *l, int need_eq)
{
  size_t pos = 0, ilen;
  const char *item;
  int r;
  while ((r = netstring_next(f, len, &pos, &item, &ilen)) == 1)
    if (need_eq && !memchr(item, '=', ilen)) return 0;
  if (r < 0) return 0;
  l->s = f;
  l->len = len;
  return 1;
}

static int size_decode(const char *f, size_t len, unsigned long long *v)
{
  unsigned long long n = 0;
  if (len < 1 || len > 19) return 0;   /* 19 digits cannot overflow */
  for (size_t i = 0; i < len; ++i) {
    if (f[i] < '0' || f[i] > '9') return 0;
    n = n * 10 + (unsigned)(f[i] - '0');
  }
  *v = n;
  return 1;
}

static int magic_is(const char *f, size_t len, const char *magic)
{
  return len == strlen(magic) && !memcmp(f, magic, len);
}

int wire_request_decode(const char *buf, size_t len, struct wire_request *rq)
{
  const char *f[REQUEST_FIELDS];
  size_t fl[REQUEST_FIELDS], pos = 0;
  for (int i = 0; i < REQUEST_FIELDS; ++i)
    if (netstring_next(buf, len, &pos, &f[i], &fl[i]) != 1) return 0;
  if (pos != len || !magic_is(f[0], fl[0], WIRE_MAGIC)) return 0;
  if (fl[1] != 1 || (f[1][0] != '4' && f[1][0] != '5' && f[1][0] != '7')) return 0;
  rq->nargs = f[1][0] - '0';
  return opt_decode(f[2], fl[2], &rq->ip)
      && opt_decode(f[3], fl[3], &rq->id)
      && opt_decode(f[4], fl[4], &rq->helo)
      && opt_decode(f[5], fl[5], &rq->sender)
      && list_decode(f[6], fl[6], &rq->rcpts, 0)
      && list_decode(f[7], fl[7], &rq->hdrs, 0)
      && opt_decode(f[8], fl[8], &rq->body)
      && size_decode(f[9], fl[9], &rq->bodysize)
      && list_decode(f[10], fl[10], &rq->env, 1)
      && size_decode(f[11], fl[11], &rq->hdrscut);
}

int wire_list_next(const struct wire_list *l, size_t *pos,
                   const char **item, size_t *ilen)
{
  return netstring_next(l->s, l->len, pos, item, ilen) == 1;
}

/* ---- the hello ---- */

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

long wire_hello_decode(const char *buf, size_t len, struct wire_opt *client)
{
  long flen = netstring_frame(buf, len, WIRE_MAX_HELLO);
  const char *payload, *f[2];
  size_t plen, fl[2], pos = 0, fpos = 0;
  if (flen <= 0) return flen;
  netstring_next(buf, (size_t)flen, &fpos, &payload, &plen);   /* whole: it is */
  for (int i = 0; i < 2; ++i)
    if (netstring_next(payload, plen, &pos, &f[i], &fl[i]) != 1) return -1;
  if (pos != plen || !magic_is(f[0], fl[0], WIRE_HELLO_MAGIC)
      || !opt_decode(f[1], fl[1], client))
    return -1;
  return flen;
}

/* ---- the reply ---- */

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
  if (!magic_is(f[0], fl[0], WIRE_MAGIC)) return 0;
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

int wire_header_cat(stralloc *headers, const char *label, size_t llen,
                    const char *text, size_t tlen)
{
  size_t mark = netstring_open(headers);
  return mark != (size_t)-1 && netstring_catb(headers, label, llen)
      && netstring_catb(headers, text, tlen) && netstring_close(headers, mark);
}

int wire_reply_begin(stralloc *out, size_t *frame_mark)
{
  *frame_mark = netstring_open(out);
  return *frame_mark != (size_t)-1 && netstring_cats(out, WIRE_MAGIC);
}

int wire_reply_end(stralloc *out, size_t frame_mark)
{
  if (!netstring_close(out, frame_mark)) return 0;
  return out->len - frame_mark <= WIRE_MAX_FRAME ? 1 : -1;
}

int wire_reply_encode(stralloc *out, const struct policy_verdict *v)
{
  char code[8] = "";
  size_t frame;
  if (v->code > 0 && v->code < 1000) {
    code[0] = (char)('0' + v->code / 100);
    code[1] = (char)('0' + v->code / 10 % 10);
    code[2] = (char)('0' + v->code % 10);
    code[3] = 0;
  }
  return wire_reply_begin(out, &frame)
      && netstring_cats(out, policy_action_name(v->action))
      && netstring_cats(out, code)
      && netstring_catb(out, v->xcode.s, v->xcode.len)
      && netstring_catb(out, v->text.s, v->text.len)
      && netstring_catb(out, v->headers.s, v->headers.len)
      && (!v->edits.len || netstring_catb(out, v->edits.s, v->edits.len))
      && wire_reply_end(out, frame) == 1;
}

void policy_verdict_free(struct policy_verdict *v)
{
  stralloc_free(&v->xcode);
  stralloc_free(&v->text);
  stralloc_free(&v->headers);
  stralloc_free(&v->edits);
}
