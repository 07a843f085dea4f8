/* A read buffer over one fd, with deadlines: the client side and prog's
 * replies both come through one of these. */
#ifndef STREAM_H
#define STREAM_H
#include <stddef.h>
#include "deadline.h"
#include "stralloc.h"

struct stream {
  int fd;
  char *buf;
  size_t size, start, end;   /* unread bytes are buf[start..end) */
};

void stream_init(struct stream *s, int fd, char *buf, size_t size);
/* Read more (compacting first): >0 bytes added, 0 EOF, -1 error or timeout. */
long stream_fill(struct stream *s, deadline_t deadline);
/* Index of the first LF in the unread bytes, or -1. */
long stream_find_lf(const struct stream *s);

/* One whole SMTP reply (lines until "NNN "), each line stored CRLF-terminated
 * in out: 1 ok, 0 EOF, -1 error, timeout, or a reply too long or malformed. */
int reply_read(struct stream *s, stralloc *out, int *code, deadline_t deadline);

#endif
