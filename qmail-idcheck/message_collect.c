#include "message_collect.h"
#include "netstring.h"
#include <string.h>

void message_collect_start(struct message_collect *c, size_t bodymax, size_t hdrsmax)
{
  c->bol = 1;
  c->in_headers = 1;
  c->have_field = c->field_over = 0;
  c->line.len = c->field.len = c->hdrs.len = c->body.len = 0;
  c->bodysize = 0;
  c->bodymax = bodymax;
  c->hdrsmax = hdrsmax;
}

static int field_finish(struct message_collect *c)
{
  if (!c->have_field) return 1;
  c->have_field = 0;
  if (c->field_over) { c->field_over = 0; return 1; }        /* past the cap: dropped */
  if (c->hdrs.len + c->field.len > c->hdrsmax) return 1;
  return netstring_catb(&c->hdrs, c->field.s, c->field.len);
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
    return stralloc_copyb(&c->field, l, len);
  }
  /* not a header field: the header section ends, and this line is body */
  c->in_headers = 0;
  return field_finish(c) && body_add(c, l, len) && body_add(c, "\r\n", 2);
}

int message_collect_feed(struct message_collect *c, const char *buf, size_t len)
{
  while (len) {
    if (c->bol && *buf == '.') { ++buf; --len; c->bol = 0; continue; }
    const char *lf = memchr(buf, '\n', len);
    size_t seg = lf ? (size_t)(lf - buf) + 1 : len;
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
