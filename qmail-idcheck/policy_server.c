/* checkID through a warm qmail-idcheckd: IDCHECK_SERVER names its Unix
 * socket. The session connects at its first call and keeps the connection
 * for its later calls; the frames are those qmail-idcheck-python speaks
 * (lib/policy_wire.h), one request, one reply.
 *
 * Every wait ends at the call's deadline. A server that is down, slow, or
 * whose worker dies mid-call is a fault like a dying policy process; the
 * connection is dropped and the next call connects afresh. A connection the
 * server closed while idle (restart, idle limit) shows as EPIPE on the
 * request's write: the server never saw the request, so that call
 * reconnects once, at once. */
#include "policy_transport.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;
static unsigned long calls;     /* answered on this connection */
static stralloc inbuf;

static void conn_close(void)
{
  if (fd >= 0) close(fd);
  fd = -1;
  calls = 0;
  inbuf.len = 0;
}

static void fault(stralloc *why, const char *what, const char *path, int err)
{
  stralloc_copys(why, what);
  if (path) { stralloc_cats(why, " "); stralloc_cats(why, path); }
  if (err) { stralloc_cats(why, ": "); stralloc_cats(why, strerror(err)); }
}

static int conn_open(const char *path, deadline_t deadline, stralloc *why)
{
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sun.sun_path) {
    fault(why, "policy server socket path too long:", path, 0);
    return 0;
  }
  strcpy(sun.sun_path, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fault(why, "cannot create a socket for the policy server", 0, errno);
    return 0;
  }
  for (;;) {
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) return 1;
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN) {
      /* the server's backlog is full: it is busy; try again until the deadline */
      if (now_ms() >= deadline) {
        fault(why, "policy server busy (connect timed out):", path, 0);
        break;
      }
      struct timespec ts = { 0, 2 * 1000 * 1000 };
      nanosleep(&ts, 0);
      continue;
    }
    if (e == EINPROGRESS) {
      int r = fd_wait(fd, POLLOUT, deadline);
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      if (r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && !soerr) return 1;
      if (r == 0) fault(why, "policy server connect timed out:", path, 0);
      else fault(why, "cannot connect to the policy server", path, soerr ? soerr : errno);
      break;
    }
    fault(why, "cannot connect to the policy server", path, e);
    break;
  }
  conn_close();
  return 0;
}

int policy_server_call(const char *path, const stralloc *request, stralloc *reply,
                       deadline_t deadline, stralloc *why)
{
  for (int attempt = 0; ; ++attempt) {
    if (fd < 0 && !conn_open(path, deadline, why)) return 0;
    if (write_all_deadline(fd, request->s, request->len, deadline) == 0) break;
    int e = errno;
    int reused = calls > 0;
    conn_close();
    if ((e == EPIPE || e == ECONNRESET) && reused && attempt == 0) continue;
    if (e == ETIMEDOUT) stralloc_copys(why, "checkID call timed out (policy server)");
    else fault(why, "the policy server closed the connection", 0, e);
    return 0;
  }
  switch (policy_frame_read(fd, &inbuf, reply, deadline)) {
    case FRAME_OK: ++calls; return 1;
    case FRAME_MALFORMED: stralloc_copys(why, "malformed reply from the policy server"); break;
    case FRAME_EXTRA: stralloc_copys(why, "unexpected data from the policy server"); break;
    case FRAME_TIMEOUT: stralloc_copys(why, "checkID call timed out (policy server)"); break;
    case FRAME_NOMEM: stralloc_copys(why, "out of memory"); break;
    case FRAME_EOF: stralloc_copys(why, "the policy process died (qmail-idcheckd worker)"); break;
    case FRAME_ERROR: fault(why, "cannot read from the policy server", 0, errno); break;
  }
  conn_close();
  return 0;
}

void policy_server_end(void)
{
  conn_close();
}
