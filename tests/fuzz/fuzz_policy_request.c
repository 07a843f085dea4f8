/* A request frame's payload, as a qmail-idcheckd worker or
 * qmail-idcheck-python reads it from whoever connects: decoding never reads
 * past it; a decoded request, built again with the proxy's encoder, decodes
 * to the same request (so encoder and decoder agree on every field); every
 * list item walks inside the payload and every env item has its '='. The
 * same bytes as the start of a new connection (the hello): a hello decoded
 * lies inside them, and encodes again to one that decodes the same. */
#include "fuzz.h"
#include "netstring.h"
#include "policy_wire.h"
#include <string.h>

static int same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
  return alen == blen && (!alen || !memcmp(a, b, alen));
}

static int same_opt(const struct wire_opt *a, const struct wire_opt *b)
{
  return a->present == b->present && same_bytes(a->s, a->len, b->s, b->len);
}

static int same_list(const struct wire_list *a, const struct wire_list *b)
{
  return same_bytes(a->s, a->len, b->s, b->len);
}

static void list_walk(const char *buf, size_t size, const struct wire_list *l, int need_eq)
{
  size_t pos = 0, ilen;
  const char *item;
  CHECK(!l->len || (l->s >= buf && l->s + l->len <= buf + size));
  while (wire_list_next(l, &pos, &item, &ilen)) {
    CHECK(item >= l->s && item + ilen <= l->s + l->len);
    if (need_eq) CHECK(memchr(item, '=', ilen) != 0);
  }
  CHECK(pos == l->len);
}

static int encode(stralloc *out, const struct wire_request *rq)
{
  char num[2][24];
  size_t frame;
  snprintf(num[0], sizeof num[0], "%llu", rq->bodysize);
  snprintf(num[1], sizeof num[1], "%llu", rq->hdrscut);
  return wire_request_begin(out, &frame, rq->nargs)
      && wire_put_opt(out, rq->ip.s, rq->ip.len, rq->ip.present)
      && wire_put_opt(out, rq->id.s, rq->id.len, rq->id.present)
      && wire_put_opt(out, rq->helo.s, rq->helo.len, rq->helo.present)
      && wire_put_opt(out, rq->sender.s, rq->sender.len, rq->sender.present)
      && netstring_catb(out, rq->rcpts.s, rq->rcpts.len)
      && netstring_catb(out, rq->hdrs.s, rq->hdrs.len)
      && wire_put_opt(out, rq->body.s, rq->body.len, rq->body.present)
      && netstring_cats(out, num[0])
      && netstring_catb(out, rq->env.s, rq->env.len)
      && netstring_cats(out, num[1])
      && wire_request_end(out, frame);
}

static void hello(const char *buf, size_t size)
{
  static stralloc again;
  struct wire_opt c, d;
  long flen = wire_hello_decode(buf, size, &c);
  CHECK(flen >= -1 && flen <= (long)size);
  if (flen <= 0) return;
  CHECK(!c.len || (c.s >= buf && c.s + c.len <= buf + flen));
  again.len = 0;
  if (!wire_hello_encode(&again, c.s, c.len, c.present)) {
    CHECK(c.len > WIRE_MAX_HELLO - 30);   /* only what the encoder's frame cannot hold */
    return;
  }
  CHECK(again.len <= WIRE_MAX_HELLO);
  CHECK(wire_hello_decode(again.s, again.len, &d) == (long)again.len);
  CHECK(same_opt(&c, &d));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static stralloc frame;
  const char *buf = (const char *)data;
  struct wire_request rq, back;
  hello(buf, size);
  if (!wire_request_decode(buf, size, &rq)) return 0;
  CHECK(rq.nargs == 4 || rq.nargs == 5 || rq.nargs == 7);
  list_walk(buf, size, &rq.rcpts, 0);
  list_walk(buf, size, &rq.hdrs, 0);
  list_walk(buf, size, &rq.env, 1);

  frame.len = 0;
  CHECK(encode(&frame, &rq));
  struct wire_frame f;
  CHECK(wire_frame_parse(frame.s, frame.len, &f) == 1 && f.len == frame.len);
  CHECK(wire_request_decode(f.payload, f.plen, &back));
  CHECK(back.nargs == rq.nargs && back.bodysize == rq.bodysize && back.hdrscut == rq.hdrscut);
  CHECK(same_opt(&back.ip, &rq.ip) && same_opt(&back.id, &rq.id) && same_opt(&back.helo, &rq.helo)
        && same_opt(&back.sender, &rq.sender) && same_opt(&back.body, &rq.body));
  CHECK(same_list(&back.rcpts, &rq.rcpts) && same_list(&back.hdrs, &rq.hdrs)
        && same_list(&back.env, &rq.env));
  return 0;
}
