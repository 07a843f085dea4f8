/* qmail-idcheck-queue: the QMAILQUEUE wrapper qmail-idcheck puts in front of
 * the real qmail-queue. It spools the message (fd 0), asks qmail-idcheck for
 * this transaction's verdict over the channel named by IDCHECK_CHANNEL, and
 * then queues it with the policy's headers above qmail-smtpd's Received line,
 * filters it, discards it, or refuses it with qmail-queue's exit codes.
 *
 * Why asking at fd 0's EOF is safe: qmail-smtpd closes fd 0 only after the
 * final dot, and qmail-idcheck forwards that dot only after the verdict for
 * this message is fixed; it answers only between the dot and qmail-smtpd's
 * reply to it. A wrapper whose client vanished finds no verdict and queues
 * nothing. */
#include "databytes.h"
#include "deadline.h"
#include "header_fold.h"
#include "netstring.h"
#include "policy_wire.h"
#include "stralloc.h"
#include "wait_deadline.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* qmail-queue's exit codes, as qmail-smtpd reads them */
#define QQ_PERM_REJECT 31
#define QQ_TEMP_REJECT 71
#define QQ_READ_ERROR 54
#define QQ_WRITE_ERROR 53
#define QQ_INTERNAL 81
#define QQ_NO_EXEC 120
#define FILTER_DISCARD 99

#define ASK_TIMEOUT_MS (120 * 1000)
#define LIFETIME_SECONDS 86400   /* as qmail-queue: a stuck wrapper dies, nothing queued */
#define FILTER_TIMEOUT_SECONDS 300

static char pidtext[24];

static void log_line(const char *what, const char *detail)
{
  const char *session = getenv("IDCHECK_PID");
  dprintf(2, "qmail-idcheck-queue: pid %s %s%s%s\n", session ? session : pidtext, what,
          detail ? ": " : "", detail ? detail : "");
}

/* qmail-smtpd writes the envelope after fd 0's EOF and counts a failed write
 * as an error: read it to the end before leaving without the real queue. */
static void envelope_drain(void)
{
  char buf[4096];
  deadline_t deadline = deadline_in(ASK_TIMEOUT_MS);
  while (read_deadline(1, buf, sizeof buf, deadline) > 0) {}
}

__attribute__((noreturn)) static void leave(int code)
{
  envelope_drain();
  _exit(code);
}

static int memfd(const char *name)
{
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) { log_line("cannot create a spool", strerror(errno)); _exit(QQ_WRITE_ERROR); }
  return fd;
}

/* The message is spooled behind a hole of HEADROOM bytes (a hole costs no
 * memory in a memfd); the headers are written just before it, and the real
 * queue reads from there: the message is never copied again. */
#define HEADROOM (256 * 1024)

/* Spool fd 0 to its end, keeping at most max bytes: 1 all of it was kept,
 * 0 it was longer (the rest was read and dropped: memory in a memfd is
 * shared memory, which softlimit does not bound). */
static int spool_at(int from, int to, off_t offset, unsigned long long max)
{
  static char buf[65536];
  unsigned long long kept = 0;
  if (lseek(to, offset, SEEK_SET) < 0) _exit(QQ_WRITE_ERROR);
  for (;;) {
    /* pipe to memfd by moving pages where the kernel can */
    unsigned long long room = max + 1 - kept;
    ssize_t n = splice(from, 0, to, 0, room < (1 << 20) ? room : (1 << 20), SPLICE_F_MOVE);
    if (n > 0) {
      if ((kept += (unsigned long long)n) > max) break;
      continue;
    }
    if (n == 0) return 1;
    if (errno == EINTR) continue;
    if (errno != EINVAL) _exit(QQ_READ_ERROR);
    break;   /* fd 0 is not a pipe: copy */
  }
  for (;;) {
    ssize_t n = read(from, buf, sizeof buf);
    if (n == 0) return kept <= max;
    if (n < 0) {
      if (errno == EINTR) continue;
      _exit(QQ_READ_ERROR);
    }
    if (kept > max) continue;   /* over: read to the end, keep nothing more */
    kept += (unsigned long long)n;
    if (kept <= max && write_all_deadline(to, buf, (size_t)n, DEADLINE_NONE) < 0)
      _exit(QQ_WRITE_ERROR);
  }
}

/* Ask for the verdict: 1 with v filled, 0 when there is none for us. */
static int verdict_ask(int channel, struct policy_verdict *v)
{
  stralloc msg = { 0 };
  if (!stralloc_copys(&msg, "") || !netstring_cats(&msg, "ask")
      || !netstring_cats(&msg, pidtext))
    _exit(QQ_INTERNAL);
  if (send(channel, msg.s, msg.len, MSG_NOSIGNAL) < 0) {
    log_line("cannot ask for the verdict", strerror(errno));
    stralloc_free(&msg);
    return 0;
  }
  stralloc_free(&msg);
  static char buf[WIRE_MAX_FRAME > 1048576 ? 1048576 : WIRE_MAX_FRAME];
  deadline_t deadline = deadline_in(ASK_TIMEOUT_MS);
  for (;;) {
    int r = fd_wait(channel, POLLIN, deadline);
    if (r <= 0) { log_line("no verdict", r == 0 ? "timed out" : strerror(errno)); return 0; }
    ssize_t n = recv(channel, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) { log_line("no verdict", "qmail-idcheck has gone"); return 0; }
    size_t pos = 0, flen;
    const char *f;
    if (netstring_next(buf, (size_t)n, &pos, &f, &flen) != 1) return 0;
    if (flen != strlen(pidtext) || memcmp(f, pidtext, flen)) continue;  /* not ours */
    if (netstring_next(buf, (size_t)n, &pos, &f, &flen) != 1) return 0;
    if (flen == 4 && !memcmp(f, "none", 4)) { log_line("no verdict", "none pending"); return 0; }
    const char *payload;
    size_t plen, fp = 0;
    if (netstring_next(f, flen, &fp, &payload, &plen) != 1) return 0;
    return wire_reply_decode(payload, plen, v);
  }
}

/* header0 goes directly above qmail-smtpd's Received line, header1 above it:
 * so they are written last to first. */
static int headers_render(const struct policy_verdict *v, stralloc *out)
{
  size_t n = v->nheaders, pos = 0;
  struct { const char *l, *t; size_t ll, tl; } *h = calloc(n ? n : 1, sizeof *h);
  if (!h) return 0;
  for (size_t i = 0; i < n; ++i)
    if (wire_header_next(v, &pos, &h[i].l, &h[i].ll, &h[i].t, &h[i].tl) != 1) { free(h); return 0; }
  out->len = 0;
  for (size_t i = n; i-- > 0;)
    if (!header_fold(out, h[i].l, h[i].ll, h[i].t, h[i].tl)) { free(h); return 0; }
  free(h);
  return 1;
}

/* IDCHECK_FILTER, qmail-qfilter style: message on stdin, new message on
 * stdout; exit 0 go on, 31 reject, 99 discard, anything else temporary. */
static int filter_run(const char *command, int in)
{
  int outfd = memfd("qmail-idcheck-filtered");
  pid_t pid = fork();
  if (pid < 0) _exit(QQ_TEMP_REJECT);
  if (pid == 0) {
    if (dup2(in, 0) < 0 || dup2(outfd, 1) < 0) _exit(111);
    close(6);   /* qmail-smtpd's error channel is the real queue's, not the filter's */
    execl("/bin/sh", "sh", "-c", command, (char *)0);
    _exit(111);
  }
  int expired;
  int status = wait_deadline(pid, FILTER_TIMEOUT_SECONDS, &expired);
  if (expired) {
    log_line("filter timed out", command);
    leave(QQ_TEMP_REJECT);
  }
  int code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 0) return outfd;
  if (code == FILTER_DISCARD) { log_line("discarded by the filter", command); leave(0); }
  if (code == QQ_PERM_REJECT) { log_line("rejected by the filter", command); leave(QQ_PERM_REJECT); }
  log_line("filter failed", command);
  leave(QQ_TEMP_REJECT);
  return -1;
}

/* IDCHECK_CHANNEL's descriptor, if it is the SEQPACKET socket qmail-idcheck
 * made (above 6), else -1. It is made close-on-exec: the real queue and
 * filters never see it. */
static int channel_open(const char *text)
{
  char *end;
  long fd = strtol(text, &end, 10);
  int type;
  socklen_t len = sizeof type;
  if (!*text || *end || fd < 7 || fd > 65535
      || getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
    return -1;
  fcntl((int)fd, F_SETFD, FD_CLOEXEC);
  return (int)fd;
}

int main(void)
{
  alarm(LIFETIME_SECONDS);   /* the real queue sets its own after exec */
  snprintf(pidtext, sizeof pidtext, "%d", (int)getpid());
  const char *queue = getenv("IDCHECK_QUEUE");
  if (!queue || !*queue) queue = "/var/qmail/bin/qmail-queue";
  const char *chan = getenv("IDCHECK_CHANNEL");
  if (!chan) {
    /* not under qmail-idcheck: be the queue it wraps */
    log_line("no verdict channel, queuing unchanged", 0);
    execl(queue, queue, (char *)0);
    _exit(QQ_NO_EXEC);
  }
  int channel = channel_open(chan);
  if (channel < 0) {
    /* a verdict was promised and cannot be had: never a silent pass */
    log_line("the verdict channel is unusable, refusing for now", chan);
    leave(QQ_TEMP_REJECT);
  }

  int message = memfd("qmail-idcheck-message");
  int whole = spool_at(0, message, HEADROOM, databytes_limit() + DATABYTES_SLACK);

  struct policy_verdict v = { 0 };
  if (!verdict_ask(channel, &v)) leave(QQ_TEMP_REJECT);
  close(channel);
  if (!whole) {
    /* qmail-idcheck refuses it with 552 (it counts the same bytes) */
    log_line("message too big", 0);
    leave(QQ_PERM_REJECT);
  }

  const char *onerror = getenv("IDCHECK_ONERROR");
  switch (v.action) {
    case ACT_REJECT: log_line("rejected", 0); leave(QQ_PERM_REJECT);
    case ACT_TEMPFAIL: log_line("temporarily rejected", 0); leave(QQ_TEMP_REJECT);
    case ACT_DISCARD: log_line("discarded", 0); leave(0);
    case ACT_ACCEPT: case ACT_CONTINUE: case ACT_FILTER: break;
    default: log_line("unusable verdict", policy_action_name(v.action)); leave(QQ_TEMP_REJECT);
  }

  stralloc headers = { 0 };
  if (!headers_render(&v, &headers)) {
    /* a header that cannot be written legally is a fault, never injected */
    if (!onerror || strcmp(onerror, "accept")) {
      log_line("fault", "a header cannot be written legally");
      leave(QQ_TEMP_REJECT);
    }
    log_line("fault, queuing without headers", "a header cannot be written legally");
    headers.len = 0;
  }
  if (headers.len > HEADROOM) {
    log_line("fault", "headers too long");
    leave(QQ_TEMP_REJECT);
  }
  off_t start = HEADROOM - (off_t)headers.len;
  if (pwrite(message, headers.s, headers.len, start) != (ssize_t)headers.len) _exit(QQ_WRITE_ERROR);
  stralloc_free(&headers);
  if (lseek(message, start, SEEK_SET) < 0) _exit(QQ_WRITE_ERROR);

  const char *filter = getenv("IDCHECK_FILTER");
  if (v.action == ACT_FILTER && filter && *filter) {
    int filtered = filter_run(filter, message);
    close(message);
    message = filtered;
    lseek(message, 0, SEEK_SET);
  }
  policy_verdict_free(&v);

  /* the queue reads fd 0 from its offset: the headers' first byte */
  if (dup2(message, 0) < 0) _exit(QQ_INTERNAL);
  execl(queue, queue, (char *)0);
  log_line("cannot exec the queue", queue);
  _exit(QQ_NO_EXEC);
}
