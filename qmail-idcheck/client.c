#include "client.h"
#include "deadline.h"
#include "log.h"
#include "session_end.h"
#include "stream.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>

static char space[65536];
static struct stream in;
static int out_fd = 1;
static stralloc pending;          /* replies not yet written */
static int64_t timeout;
static deadline_t idle_deadline;

void client_start(int rfd, int wfd, int64_t timeout_ms)
{
  fcntl(rfd, F_SETFL, fcntl(rfd, F_GETFL) | O_NONBLOCK);
  fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
  stream_init(&in, rfd, space, sizeof space);
  out_fd = wfd;
  timeout = timeout_ms;
  client_progress();
}

void client_switch(int rfd, int wfd)
{
  client_flush();
  client_start(rfd, wfd, timeout);
}

void client_progress(void)
{
  idle_deadline = deadline_in(timeout);
}

void client_out(const char *s)
{
  if (!stralloc_cats(&pending, s)) die_nomem();
}

void client_out_sa(const stralloc *sa)
{
  if (!stralloc_cat(&pending, sa)) die_nomem();
}

void client_flush(void)
{
  if (!pending.len) return;
  /* a client that stops reading cannot hold the session past the timeout */
  int r = write_all_deadline(out_fd, pending.s, pending.len, deadline_in(timeout));
  pending.len = 0;
  if (r < 0 && errno == ETIMEDOUT)
    warn("the client read no reply within IDCHECK_TIMEOUT: session ended", (char *)0);
  if (r < 0) session_end(0, 111);
}

long client_fill(void)
{
  client_flush();
  long n = stream_fill(&in, idle_deadline);
  if (n < 0 && errno == ETIMEDOUT) die_timeout();
  return n;
}

enum line_status client_line(stralloc *line, size_t max)
{
  int too_long = 0;
  for (;;) {
    long lf = stream_find_lf(&in);
    if (lf >= 0) {
      size_t len = (size_t)lf - in.start;
      const char *p = in.buf + in.start;
      in.start = (size_t)lf + 1;
      if (too_long || len + 1 > max) return LINE_TOO_LONG;
      if (len && p[len - 1] == '\r') --len;
      if (!stralloc_copyb(line, p, len)) die_nomem();
      return LINE_OK;
    }
    if (in.end - in.start > max) {
      too_long = 1;
      in.start = in.end;   /* keep nothing of it */
    }
    if (client_fill() <= 0) return LINE_EOF;
  }
}

size_t client_unread(const char **p)
{
  *p = in.buf + in.start;
  return in.end - in.start;
}

void client_consume(size_t n)
{
  in.start += n;
}
