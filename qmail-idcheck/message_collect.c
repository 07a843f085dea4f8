#include "message_collect.h"
#include "netstring.h"
#include <string.h>

void message_collect_start(struct message_collect *c, size_t bodymax, size_t hdrsmax)
{
  c->bol = 1;
  c->in_headers = 1;
  c->have_field = c->field_over = 0;
  c->line.len = c->field.len = c->hdrs.len = c->body.len = c->where.len = 0;
  c->bodysize = c->hdrscut = c->stored = c->line_at = c->field_at = 0;
  c->bodymax = bodymax;
  c->hdrsmax = hdrsmax;
}

static int field_finish(struct message_collect *c)
{
  if (!c->have_field) return 1;
  c->have_field = 0;
  if (c->field_over || c->hdrs.len + c->field.len > c->hdrsmax) {
    /* past the cap: dropped, and counted so the policy knows */
    c->field_over = 0;
    ++c->hdrscut;
    return 1;
  }
  struct message_field f = { c->field_at, 0 };
  f.namelen = (size_t)((const char *)memchr(c->field.s, ':', c->field.len) - c->field.s);
  return netstring_catb(&c->hdrs, c->field.s, c->field.len)
      && stralloc_catb(&c->where, (const char *)&f, sizeof f);
}

const struct message_field *message_collect_field(const struct message_collect *c, size_t i)
{
  if (i >= c->where.len / sizeof(struct message_field)) return 0;
  return (const struct message_field *)c->where.s + i;
}

static int body_add(struct message_collect *c, const char *s, size_t len)
{
  c->bodysize += len;
  if (c->body.len >= c->bodymax) return 1;
  size_t room = c->bodymax - c->body.len;
  return stralloc_catb(&c->body, s, len < room ? len : room);
}

/* A whole header line, unstuffed, without its CRLF. */
static int header_line(struct message_collect *c)
{
  const char *l = c->line.s;
  size_t len = c->line.len;
  if (!len) {
    c->in_headers = 0;
    return field_finish(c);
  }
  if (l[0] == ' ' || l[0] == '\t') {
    if (c->have_field) {
      /* a client can fold one field forever: memory stays within hdrsmax */
      if (c->field_over || c->field.len + 2 + len > c->hdrsmax) { c->field_over = 1; return 1; }
      return stralloc_catb(&c->field, "\r\n", 2) && stralloc_catb(&c->field, l, len);
    }
  } else if (memchr(l, ':', len)) {
    if (!field_finish(c)) return 0;
    c->have_field = 1;
    c->field_at = c->line_at;
    return stralloc_copyb(&c->field, l, len);
  }
  /* not a header field: the header section ends, and this line is body */
  c->in_headers = 0;
  return field_finish(c) && body_add(c, l, len) && body_add(c, "\r\n", 2);
}

int message_collect_feed(struct message_collect *c, const char *buf, size_t len)
{
  while (len) {
    if (c->bol) c->line_at = c->stored;
    if (c->bol && *buf == '.') { ++buf; --len; c->bol = 0; continue; }
    const char *lf = memchr(buf, '\n', len);
    size_t seg = lf ? (size_t)(lf - buf) + 1 : len;
    /* stored with LF line ends: a CR here can only be a CRLF's, the one
     * before this segment's LF (or its last byte, the LF still to come) */
    c->stored += seg - (memchr(buf, '\r', seg) != 0);
    if (c->in_headers) {
      size_t keep = seg;
      if (c->line.len + keep > c->hdrsmax) keep = c->line.len < c->hdrsmax ? c->hdrsmax - c->line.len : 0;
      if (!stralloc_catb(&c->line, buf, keep)) return 0;
      if (lf) {
        /* strip the CRLF (the CR may have come in an earlier piece) */
        if (c->line.len && c->line.s[c->line.len - 1] == '\n') --c->line.len;
        if (c->line.len && c->line.s[c->line.len - 1] == '\r') --c->line.len;
        if (!header_line(c)) return 0;
        c->line.len = 0;
      }
    } else if (!body_add(c, buf, seg)) {
      return 0;
    }
    c->bol = lf != 0;
    buf += seg;
    len -= seg;
  }
  return 1;
}

int message_collect_end(struct message_collect *c)
{
  if (c->in_headers && c->line.len && !header_line(c)) return 0;
  c->line.len = 0;
  return field_finish(c);
}
