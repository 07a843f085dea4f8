#include "python_request.h"
#include "netstring.h"
#include "policy_wire.h"
#include <string.h>

#define REQUEST_FIELDS 12

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

int py_request_decode(const char *buf, size_t len, struct py_request *rq)
{
  const char *f[REQUEST_FIELDS];
  size_t fl[REQUEST_FIELDS], pos = 0;
  for (int i = 0; i < REQUEST_FIELDS; ++i)
    if (netstring_next(buf, len, &pos, &f[i], &fl[i]) != 1) return 0;
  if (pos != len) return 0;
  if (fl[0] != strlen(WIRE_MAGIC) || memcmp(f[0], WIRE_MAGIC, fl[0])) return 0;
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
