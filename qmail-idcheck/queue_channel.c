#include "queue_channel.h"
#include "env_number.h"
#include "log.h"
#include "netstring.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STALE_QUESTIONS_MAX 64   /* drained per dot: the far ends are few */
#define ANSWER_MAX (1 << 20)     /* a verdict is one datagram: headers <= 64 KB */

unsigned long queue_databytes(void)
{
  return env_ulong("IDCHECK_DATABYTES", QUEUE_DATABYTES_DEFAULT, 1, ULONG_MAX - QUEUE_SPOOL_SLACK);
}

/* ---- the proxy's half ---- */

static int own = -1, far = -1;

int queue_channel_make(void)
{
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return 0;
  own = sv[0];
  far = fcntl(sv[1], F_DUPFD, 7);   /* inheritable, above 6 */
  close(sv[1]);
  char num[24];
  snprintf(num, sizeof num, "%d", far);
  return far >= 0 && setenv("IDCHECK_CHANNEL", num, 1) == 0;
}

void queue_channel_keep_own_end(void)
{
  if (far >= 0) close(far);
  far = -1;
}

int queue_channel_fd(void)
{
  return own;
}

static void channel_close(void)
{
  if (own >= 0) close(own);
  own = -1;
}

void queue_channel_answer(const struct policy_verdict *verdict, int *taken)
{
  static stralloc out, frame;
  char buf[256];
  ssize_t n = recv(own, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) { channel_close(); return; }   /* EOF, HUP: every far end is gone */
  size_t pos = 0, flen, plen;
  const char *f, *pid;
  if (netstring_next(buf, (size_t)n, &pos, &f, &flen) != 1 || flen != 3 || memcmp(f, "ask", 3)
      || netstring_next(buf, (size_t)n, &pos, &pid, &plen) != 1)
    return;
  out.len = 0;
  if (!netstring_catb(&out, pid, plen)) return;
  size_t asker = out.len;
  if (verdict) {
    frame.len = 0;
    if (wire_reply_encode(&frame, verdict) && netstring_catb(&out, frame.s, frame.len)
        && send(own, out.s, out.len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
      *taken = 1;
      return;
    }
    /* a fault: the wrapper is told there is none, and queues nothing */
    warn_sys("fault: the verdict cannot be sent to the queue wrapper", (char *)0);
    out.len = asker;
  }
  if (netstring_cats(&out, "none") && send(own, out.s, out.len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {}
}

void queue_channel_drain_stale(void)
{
  for (int i = 0; own >= 0 && i < STALE_QUESTIONS_MAX; ++i) {
    struct pollfd p = { own, POLLIN, 0 };
    if (poll(&p, 1, 0) <= 0) return;
    queue_channel_answer(0, 0);
  }
}

/* ---- the wrapper's half ---- */

int queue_channel_open(const char *value)
{
  char *end;
  long fd = strtol(value, &end, 10);
  int type;
  socklen_t len = sizeof type;
  if (!*value || *end || fd < 7 || fd > 65535
      || getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
    return -1;
  fcntl((int)fd, F_SETFD, FD_CLOEXEC);   /* the real queue and filters never see it */
  return (int)fd;
}

int queue_channel_ask(int fd, const char *pid, struct policy_verdict *v,
                      deadline_t deadline, const char **why)
{
  static stralloc question;
  static char answer[ANSWER_MAX];
  question.len = 0;
  if (!netstring_cats(&question, "ask") || !netstring_cats(&question, pid)) {
    *why = "out of memory";
    return 0;
  }
  if (send(fd, question.s, question.len, MSG_NOSIGNAL) < 0) {
    *why = "cannot ask: qmail-idcheck has gone";
    return 0;
  }
  size_t pidlen = strlen(pid);
  for (;;) {
    int r = fd_wait(fd, POLLIN, deadline);
    if (r <= 0) { *why = r == 0 ? "timed out" : "cannot wait for the answer"; return 0; }
    ssize_t n = recv(fd, answer, sizeof answer, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) { *why = "qmail-idcheck has gone"; return 0; }
    size_t pos = 0, flen;
    const char *f;
    *why = "malformed answer";
    if (netstring_next(answer, (size_t)n, &pos, &f, &flen) != 1) return 0;
    if (flen != pidlen || memcmp(f, pid, flen)) continue;   /* not ours */
    if (netstring_next(answer, (size_t)n, &pos, &f, &flen) != 1) return 0;
    if (flen == 4 && !memcmp(f, "none", 4)) { *why = "none pending"; return 0; }
    const char *payload;
    size_t plen, fp = 0;
    if (netstring_next(f, flen, &fp, &payload, &plen) != 1) return 0;
    return wire_reply_decode(payload, plen, v);
  }
}
