/* checkID through a warm qmail-idcheckd: IDCHECK_SERVER names its Unix
 * socket. The session connects at its first call, says whom it serves (the
 * hello: TCPREMOTEIP, by which the server bounds the workers one client
 * holds) and keeps the connection for its later calls; the frames are those
 * qmail-idcheck-python speaks (lib/policy_wire.h), one request, one reply.
 *
 * Every wait ends at the call's deadline. A server that is slow, or whose
 * worker dies mid-call, is a fault like a dying policy process; the
 * connection is dropped and the next call connects afresh. A server that
 * is down (the socket is missing, or nobody listens on it) is told apart:
 * policy.c may run the call embedded instead (IDCHECK_FALLBACK).
 *
 * A connection the server closed while idle (restart, idle limit) shows as
 * EPIPE on the request's write; one it closed with the request unread
 * (stopping with queued connections, an idle connection closed as the
 * request arrived) shows as ECONNRESET on the reply's read. Either way the
 * server never saw the request, so that call reconnects once, at once (and
 * a server found down then is SERVER_DOWN too). */
#include "policy_server.h"
#include "policy_wire.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
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

/* The hello: whom this session serves (TCPREMOTEIP), the first bytes on a
 * new connection. Written in one write on an empty socket. */
static int hello_send(deadline_t deadline, stralloc *why)
{
  static stralloc hello;
  const char *ip = getenv("TCPREMOTEIP");
  hello.len = 0;
  if (!(ip && wire_hello_encode(&hello, ip, strlen(ip), 1))
      && !wire_hello_encode(&hello, 0, 0, 0)) {
    stralloc_copys(why, "out of memory");
    return 0;
  }
  if (write_all_deadline(fd, hello.s, hello.len, deadline) == 0) return 1;
  fault(why, "cannot greet the policy server", 0, errno);
  return 0;
}

/* 1 connected, 0 a fault, SERVER_DOWN: nobody serves the socket (missing,
 * or refused: a server stopped or killed), so nothing was sent. */
static int conn_open(const char *path, deadline_t deadline, stralloc *why)
{
  int r = 0;
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sun.sun_path) {
    fault(why, "policy server socket path too long:", path, 0);
    return 0;
  }
  strcpy(sun.sun_path, path);
  /* a blocking connect bounded by SO_SNDTIMEO: AF_UNIX connect waits while
   * the server's backlog is full, and fails with EAGAIN at the timeout */
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fault(why, "cannot create a socket for the policy server", 0, errno);
    return 0;
  }
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) {            /* a zero SO_SNDTIMEO would mean no limit */
      fault(why, "policy server busy (connect timed out):", path, 0);
      break;
    }
    struct timeval tv = { (time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000 };
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) {
      fault(why, "cannot connect to the policy server", path, errno);
      break;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
      if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        fault(why, "cannot connect to the policy server", path, errno);
        break;
      }
      if (hello_send(deadline, why)) return 1;
      break;
    }
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN) fault(why, "policy server busy (connect timed out):", path, 0);
    else fault(why, "cannot connect to the policy server", path, e);
    if (e == ENOENT || e == ECONNREFUSED) r = SERVER_DOWN;
    break;
  }
  conn_close();
  return r;
}

int policy_server_call(const char *path, const stralloc *request, stralloc *reply,
                       deadline_t deadline, stralloc *why)
{
  for (int attempt = 0; ; ++attempt) {
    if (fd < 0) {
      int r = conn_open(path, deadline, why);
      if (r != 1) return r;
    }
    if (write_all_deadline(fd, request->s, request->len, deadline) < 0) {
      int e = errno;
      int reused = calls > 0;
      conn_close();
      if ((e == EPIPE || e == ECONNRESET) && reused && attempt == 0) continue;
      if (e == ETIMEDOUT) stralloc_copys(why, "checkID call timed out (policy server)");
      else fault(why, "the policy server closed the connection", 0, e);
      return 0;
    }
    struct wire_frame f;
    enum wire_read st = wire_frame_read_one(fd, &inbuf, deadline, &f);
    if (st == WIRE_OK && !stralloc_copyb(reply, f.payload, f.plen)) st = WIRE_NOMEM;
    if (st == WIRE_OK) { ++calls; return 1; }
    int e = errno;
    conn_close();
    /* closed with the request unread: the server never saw it */
    if (st == WIRE_ERROR && e == ECONNRESET && attempt == 0) continue;
    switch (st) {
      case WIRE_OK: break;
      case WIRE_MALFORMED: stralloc_copys(why, "malformed reply from the policy server"); break;
      case WIRE_EXTRA: stralloc_copys(why, "unexpected data from the policy server"); break;
      case WIRE_TIMEOUT: stralloc_copys(why, "checkID call timed out (policy server)"); break;
      case WIRE_NOMEM: stralloc_copys(why, "out of memory"); break;
      case WIRE_EOF: stralloc_copys(why, "the policy process died (qmail-idcheckd worker)"); break;
      case WIRE_ERROR: fault(why, "cannot read from the policy server", 0, e); break;
    }
    return 0;
  }
}

void policy_server_end(void)
{
  conn_close();
}
