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
#include "policy_wire.h"
#include "deadline.h"
#include "log.h"
#include "stralloc.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define PRIVATE_FD_MIN 10

/* Its lines are the session's ("qmail-idcheck: pid N python: ..."): one
 * grep follows a session through the proxy's lines and these. */
const char *PROG = "qmail-idcheck";

static void fds_setup(int *reqfd, int *replyfd)
{
  *reqfd = fcntl(0, F_DUPFD_CLOEXEC, PRIVATE_FD_MIN);
  *replyfd = fcntl(1, F_DUPFD_CLOEXEC, PRIVATE_FD_MIN);
  if (*reqfd < 0 || *replyfd < 0) die(111, "fatal: cannot move the request and reply fds", (char *)0);
  int null = open("/dev/null", O_RDWR);
  if (null < 0 || dup2(null, 0) < 0) die(111, "fatal: cannot open /dev/null", (char *)0);
  if (dup2(2, 1) < 0 && dup2(null, 1) < 0) die(111, "fatal: cannot point fd 1 at the log", (char *)0);
  if (null > 2) close(null);
}

/* The next request frame (what in holds after the last one counts); at EOF
 * between frames the session is over. */
static void request_read(int fd, stralloc *in, struct wire_frame *f)
{
  void *gil = py_io_begin();
  enum wire_read r = wire_frame_read(fd, in, DEADLINE_NONE, f);
  py_io_end(gil);
  switch (r) {
    case WIRE_OK: return;
    case WIRE_EOF: if (!in->len) _exit(0); die(111, "fatal: request frame cut short by EOF", (char *)0);
    case WIRE_MALFORMED: case WIRE_EXTRA: die(111, "fatal: malformed request frame", (char *)0);
    case WIRE_NOMEM: die(111, "fatal: out of memory", (char *)0);
    case WIRE_TIMEOUT: case WIRE_ERROR: die(111, "fatal: cannot read a request", (char *)0);
  }
}

static void reply_write(int fd, const stralloc *out)
{
  void *gil = py_io_begin();
  int r = write_all_deadline(fd, out->s, out->len, DEADLINE_NONE);
  py_io_end(gil);
  if (r < 0) die(111, "fatal: cannot write a reply", (char *)0);
}

int main(void)
{
  int reqfd, replyfd;
  stralloc in = {0}, out = {0};
  log_tag(log_python_tag());
  fds_setup(&reqfd, &replyfd);
  py_start();   /* the proxy writes the first request meanwhile */

  for (;;) {
    struct wire_frame f;
    request_read(reqfd, &in, &f);
    out.len = 0;
    int r = py_serve(f.payload, f.plen, &out);
    if (r == 0) die(111, "fatal: malformed request", (char *)0);
    if (r < 0) die(111, "fatal: out of memory", (char *)0);
    reply_write(replyfd, &out);
    in.len -= f.len;
    memmove(in.s, in.s + f.len, in.len);
  }
}
