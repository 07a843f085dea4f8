#include "stream.h"
#include <string.h>

/* Longest reply accepted from prog; a real qmail-smtpd sends under 200 bytes.
 * A line longer than the stream's buffer fails the read (stream_fill). */
#define REPLY_MAX 65536

void stream_init(struct stream *s, int fd, char *buf, size_t size)
{
  s->fd = fd;
  s->buf = buf;
  s->size = size;
  s->start = s->end = 0;
}

long stream_fill(struct stream *s, deadline_t deadline)
{
  if (s->start) {
    memmove(s->buf, s->buf + s->start, s->end - s->start);
    s->end -= s->start;
    s->start = 0;
  }
  if (s->end == s->size) return -1;
  ssize_t n = read_deadline(s->fd, s->buf + s->end, s->size - s->end, deadline);
  if (n > 0) s->end += (size_t)n;
  return n;
}

long stream_find_lf(const struct stream *s)
{
  const char *p = memchr(s->buf + s->start, '\n', s->end - s->start);
  return p ? p - s->buf : -1;
}

int reply_read(struct stream *s, stralloc *out, int *code, deadline_t deadline)
{
  int first = 1;
  out->len = 0;
  *code = 0;
  for (;;) {
    long lf = stream_find_lf(s);
    if (lf < 0) {
      long n = stream_fill(s, deadline);
      if (n <= 0) return (int)n;
      continue;
    }
    const char *line = s->buf + s->start;
    size_t len = (size_t)lf - s->start;
    s->start = (size_t)lf + 1;
    if (len && line[len - 1] == '\r') --len;
    if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9'
        || line[2] < '0' || line[2] > '9')
      return -1;
    if (first) *code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    first = 0;
    if (out->len + len + 2 > REPLY_MAX) return -1;
    if (!stralloc_catb(out, line, len) || !stralloc_catb(out, "\r\n", 2)) return -1;
    if (len == 3 || line[3] != '-') return 1;
  }
}
