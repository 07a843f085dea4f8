/* qmail-idcheck-python: runs checkID in Python for one qmail-idcheck session.
 *
 * qmail-idcheck starts it at the session's first checkID call with request
 * frames on fd 0, replies wanted on fd 1, and the log on fd 2. It serves one
 * call at a time (lib/policy_wire.h) until EOF, then leaves with _exit: the
 * session is over, and finalizing the interpreter would only cost time.
 *
 * The policy must not be able to touch the channel: the request and reply
 * fds move to private close-on-exec descriptors, fd 0 becomes /dev/null and
 * fd 1 the log, so print(), input() and child processes are harmless. */
#include "python_embed.h"
#include "python_log.h"
#include "netstring.h"
#include "policy_wire.h"
#include "deadline.h"
#include "stralloc.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define PRIVATE_FD_MIN 10
#define READ_CHUNK 65536

static void fatal(const char *msg)
{
  log_python2("fatal: ", msg);
  _exit(111);
}

static void fds_setup(int *reqfd, int *replyfd)
{
  *reqfd = fcntl(0, F_DUPFD_CLOEXEC, PRIVATE_FD_MIN);
  *replyfd = fcntl(1, F_DUPFD_CLOEXEC, PRIVATE_FD_MIN);
  if (*reqfd < 0 || *replyfd < 0) fatal("cannot move the request and reply fds");
  int null = open("/dev/null", O_RDWR);
  if (null < 0 || dup2(null, 0) < 0) fatal("cannot open /dev/null");
  if (dup2(2, 1) < 0 && dup2(null, 1) < 0) fatal("cannot point fd 1 at the log");
  if (null > 2) close(null);
}

/* Read more request bytes: >0 got some, 0 EOF. */
static size_t request_read(int fd, stralloc *in)
{
  if (!stralloc_readyplus(in, READ_CHUNK)) fatal("out of memory");
  for (;;) {
    void *gil = py_io_begin();
    ssize_t n = read(fd, in->s + in->len, READ_CHUNK);
    int e = errno;
    py_io_end(gil);
    if (n >= 0) {
      in->len += (size_t)n;
      return (size_t)n;
    }
    if (e != EINTR && e != EAGAIN) {
      errno = e;
      fatal("cannot read a request");
    }
  }
}

static void reply_write(int fd, const stralloc *out)
{
  void *gil = py_io_begin();
  int r = write_all_deadline(fd, out->s, out->len, DEADLINE_NONE);
  py_io_end(gil);
  if (r < 0) fatal("cannot write a reply");
}

int main(void)
{
  int reqfd, replyfd;
  stralloc in = {0}, out = {0};
  fds_setup(&reqfd, &replyfd);
  py_start();   /* the proxy writes the first request meanwhile */

  for (;;) {
    long flen = in.len ? netstring_frame(in.s, in.len, WIRE_MAX_FRAME) : 0;
    if (flen < 0) fatal("malformed request frame");
    if (flen == 0) {
      if (request_read(reqfd, &in)) continue;
      if (in.len) fatal("request frame cut short by EOF");
      _exit(0);
    }
    const char *payload;
    size_t plen, pos = 0;
    if (netstring_next(in.s, (size_t)flen, &pos, &payload, &plen) != 1)
      fatal("malformed request frame");
    out.len = 0;
    int r = py_serve(payload, plen, &out);
    if (r == 0) fatal("malformed request");
    if (r < 0) fatal("out of memory");
    reply_write(replyfd, &out);
    in.len -= (size_t)flen;
    memmove(in.s, in.s + flen, in.len);
  }
}
