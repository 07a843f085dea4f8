/* qmail-idcheck-queue: the QMAILQUEUE wrapper qmail-idcheck puts in front of
 * the real qmail-queue. It spools the message (fd 0), asks qmail-idcheck for
 * this message's verdict on the queue channel (queue_channel.h says why that
 * cannot reach another message), and then queues it with the policy's
 * headers above qmail-smtpd's Received line, filters it, discards it, or
 * refuses it with qmail-queue's exit codes. */
#include "deadline.h"
#include "header_fold.h"
#include "log.h"
#include "policy_wire.h"
#include "queue_channel.h"
#include "scan.h"
#include "spawn_stdio.h"
#include "stralloc.h"
#include "verdict.h"
#include "wait_deadline.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

const char *PROG = "qmail-idcheck-queue";

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
#define FILTER_TIMEOUT_MS (300 * 1000)

/* The message is spooled behind a hole of HEADROOM bytes (a hole costs no
 * memory in a memfd); the headers are written just before it, and the real
 * queue reads from there: the message is never copied again. */
#define HEADROOM (256 * 1024)

static char pidtext[24];

/* qmail-smtpd writes the envelope after fd 0's EOF and counts a failed write
 * as an error: read it to the end before leaving without the real queue. */
__attribute__((noreturn)) static void leave(int code)
{
  /* qmail-smtpd writes the message, then the envelope, then waits for our
   * status: read what it still sends (the message too, when we leave before
   * spooling it) so that it gets the status, not a broken pipe */
  char buf[4096];
  deadline_t deadline = deadline_in(ASK_TIMEOUT_MS);
  while (read_deadline(0, buf, sizeof buf, deadline) > 0) {}
  while (read_deadline(1, buf, sizeof buf, deadline) > 0) {}
  _exit(code);
}

__attribute__((noreturn)) static void queue_exec(const char *queue)
{
  execl(queue, queue, (char *)0);
  die_sys(QQ_NO_EXEC, "cannot exec the queue ", queue, (char *)0);
}

static int memfd(const char *name)
{
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) die_sys(QQ_WRITE_ERROR, "cannot create a spool", (char *)0);
  return fd;
}

/* Spools fd 0 to its end, keeping at most max bytes: 1 all of it was kept,
 * 0 it was longer (the rest was read and dropped: a memfd is shared memory,
 * which softlimit does not bound). */
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

/* ---- edits of the message's own header fields ---- */

/* Copies len bytes at *from_off of in to out's current offset. */
static void copy_range(int in, off_t *from_off, int out, size_t len)
{
  static char buf[65536];
  while (len) {
    ssize_t n = copy_file_range(in, from_off, out, 0, len, 0);
    if (n <= 0) {
      /* no kernel copy here: by hand */
      size_t want = len < sizeof buf ? len : sizeof buf;
      n = pread(in, buf, want, *from_off);
      if (n <= 0 || write_all_deadline(out, buf, (size_t)n, DEADLINE_NONE) < 0) _exit(QQ_WRITE_ERROR);
      *from_off += n;
    }
    len -= (size_t)n;
  }
}

/* Where the field starting at `at` ends: after the LF of its last line (a
 * line that starts with a space or tab continues it). -1: no whole field. */
static off_t field_end(int fd, off_t at, off_t end)
{
  static char buf[65536];
  int after_lf = 0;
  while (at < end) {
    ssize_t n = pread(fd, buf, sizeof buf, at);
    if (n <= 0) return -1;
    for (ssize_t i = 0; i < n; ++i) {
      if (after_lf && buf[i] != ' ' && buf[i] != '\t') return at + i;
      after_lf = buf[i] == '\n';
    }
    at += n;
  }
  return after_lf ? end : -1;
}

struct edit { off_t at; const char *name, *label; size_t nlen, llen; };

/* Whether the spool has name and then a colon at at (before end). */
static int name_at(int fd, off_t at, const char *name, size_t nlen, off_t end)
{
  char here[256];
  if (at + (off_t)nlen >= end) return 0;
  while (nlen) {
    size_t n = nlen < sizeof here ? nlen : sizeof here;
    if (pread(fd, here, n, at) != (ssize_t)n || memcmp(here, name, n)) return 0;
    at += (off_t)n;
    name += n;
    nlen -= n;
  }
  return pread(fd, here, 1, at) == 1 && here[0] == ':';
}

/* The edits, their places checked: 1 ok, 0 not this message (a fault). A
 * field's name may be empty (": x") or long; it is compared where it is. */
static int edits_read(const struct policy_verdict *v, int fd, off_t base, off_t end,
                      struct edit *e)
{
  size_t pos = 0, wl, k = 0;
  const char *w;
  while (wire_edit_next(v, &pos, &w, &wl, &e[k].name, &e[k].nlen, &e[k].label, &e[k].llen) == 1) {
    unsigned long at;
    if (!wl || scan_ulong(w, &at) != wl) return 0;
    e[k].at = base + (off_t)at;
    /* the field is where qmail-idcheck saw it: its name and colon */
    if (!name_at(fd, e[k].at, e[k].name, e[k].nlen, end)) return 0;
    /* in order of place (the list is short) */
    for (size_t j = k; j > 0 && e[j - 1].at > e[j].at; --j) {
      struct edit t = e[j]; e[j] = e[j - 1]; e[j - 1] = t;
    }
    ++k;
  }
  for (size_t j = 1; j < k; ++j)
    if (e[j].at <= e[j - 1].at + (off_t)e[j - 1].nlen) return 0;   /* one field each */
  return 1;
}

/* Where the client's own header starts: after qmail-smtpd's Received field,
 * the first of the spool. -1 when there is no such field. */
static off_t client_start(int fd, off_t end)
{
  return field_end(fd, HEADROOM, end);
}

/* The message with the edits made, as a new spool laid out as the first
 * (the message behind the HEADROOM hole). A rename keeps the field's body;
 * a removal drops the whole field, folded lines too. */
static int edits_apply(const struct policy_verdict *v, int fd)
{
  struct edit e[VERDICT_EDITS_MAX];
  off_t end = lseek(fd, 0, SEEK_END), base = client_start(fd, end);
  if (v->nedits > VERDICT_EDITS_MAX || base < 0 || !edits_read(v, fd, base, end, e)) {
    warn("fault: the header edits do not fit the message", (char *)0);
    leave(QQ_TEMP_REJECT);
  }
  int out = memfd("qmail-idcheck-edited");
  off_t from = HEADROOM;
  if (lseek(out, HEADROOM, SEEK_SET) < 0) _exit(QQ_WRITE_ERROR);
  for (size_t k = 0; k < v->nedits; ++k) {
    copy_range(fd, &from, out, (size_t)(e[k].at - from));
    if (e[k].llen) {
      size_t l = e[k].llen - (e[k].label[e[k].llen - 1] == ':');   /* its colon stays */
      if (write_all_deadline(out, e[k].label, l, DEADLINE_NONE) < 0) _exit(QQ_WRITE_ERROR);
      from += (off_t)e[k].nlen;
    } else {
      from = field_end(fd, e[k].at, end);
      if (from < 0 || (k + 1 < v->nedits && from > e[k + 1].at)) {
        warn("fault: the header edits do not fit the message", (char *)0);
        leave(QQ_TEMP_REJECT);
      }
    }
  }
  copy_range(fd, &from, out, (size_t)(end - from));
  close(fd);
  return out;
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

/* The headers in front of the spooled message; fd's offset at the first. */
static void headers_prepend(const struct policy_verdict *v, int fd)
{
  stralloc headers = { 0 };
  if (!headers_render(v, &headers)) {
    /* a header that cannot be written legally is a fault, never injected */
    const char *onerror = getenv("IDCHECK_ONERROR");
    if (!onerror || strcmp(onerror, "accept")) {
      warn("fault: a header cannot be written legally", (char *)0);
      leave(QQ_TEMP_REJECT);
    }
    warn("fault, queuing without headers: a header cannot be written legally", (char *)0);
    headers.len = 0;
  }
  if (headers.len > HEADROOM) {
    warn("fault: headers too long", (char *)0);
    leave(QQ_TEMP_REJECT);
  }
  off_t start = HEADROOM - (off_t)headers.len;
  if (pwrite(fd, headers.s, headers.len, start) != (ssize_t)headers.len) _exit(QQ_WRITE_ERROR);
  stralloc_free(&headers);
  if (lseek(fd, start, SEEK_SET) < 0) _exit(QQ_WRITE_ERROR);
}

/* IDCHECK_FILTER, qmail-qfilter style: message on stdin, new message on
 * stdout; exit 0 go on, 31 reject, 99 discard, anything else temporary.
 * Returns the filtered message. */
static int filter_run(const char *command, int in)
{
  int out = memfd("qmail-idcheck-filtered");
  pid_t pid;
  char *argv[] = { "sh", "-c", (char *)command, 0 };
  /* qmail-smtpd's error channel (fd 6) is the real queue's, not the filter's */
  if (spawn_stdio_closing(&pid, "/bin/sh", argv, in, out, 0, 6) != 0) {
    warn("cannot run the filter: ", command, (char *)0);
    leave(QQ_TEMP_REJECT);
  }
  int expired;
  int status = wait_deadline(pid, deadline_in(FILTER_TIMEOUT_MS), &expired);
  if (expired) { warn("filter timed out: ", command, (char *)0); leave(QQ_TEMP_REJECT); }
  int code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == FILTER_DISCARD) { warn("discarded by the filter: ", command, (char *)0); leave(0); }
  if (code == QQ_PERM_REJECT) { warn("rejected by the filter: ", command, (char *)0); leave(QQ_PERM_REJECT); }
  if (code != 0) { warn("filter failed: ", command, (char *)0); leave(QQ_TEMP_REJECT); }
  lseek(out, 0, SEEK_SET);
  return out;
}

/* The verdict's action, carried out; returns only to queue the message. */
static void verdict_carry_out(const struct policy_verdict *v)
{
  switch (v->action) {
    case ACT_REJECT: warn("rejected", (char *)0); leave(QQ_PERM_REJECT);
    case ACT_TEMPFAIL: warn("temporarily rejected", (char *)0); leave(QQ_TEMP_REJECT);
    case ACT_DISCARD: warn("discarded", (char *)0); leave(0);
    case ACT_ACCEPT: case ACT_CONTINUE: case ACT_FILTER: return;
    default: warn("unusable verdict: ", policy_action_name(v->action), (char *)0); leave(QQ_TEMP_REJECT);
  }
}

int main(void)
{
  alarm(LIFETIME_SECONDS);   /* the real queue sets its own after exec */
  snprintf(pidtext, sizeof pidtext, "%d", (int)getpid());
  const char *session = getenv("IDCHECK_PID");
  char tag[48];
  snprintf(tag, sizeof tag, "pid %s", session ? session : pidtext);
  log_tag(tag);   /* qmail-idcheck's pid: one search follows a session */
  const char *queue = getenv("IDCHECK_QUEUE");
  if (!queue || !*queue) queue = "/var/qmail/bin/qmail-queue";

  const char *chan = getenv("IDCHECK_CHANNEL");
  if (!chan) {
    /* not under qmail-idcheck: be the queue it wraps */
    warn("no verdict channel, queuing unchanged", (char *)0);
    queue_exec(queue);
  }
  int channel = queue_channel_open(chan);
  if (channel < 0) {
    /* a verdict was promised and cannot be had: never a silent pass */
    warn("the verdict channel is unusable, refusing for now: ", chan, (char *)0);
    leave(QQ_TEMP_REJECT);
  }

  int message = memfd("qmail-idcheck-message");
  int whole = spool_at(0, message, HEADROOM, queue_databytes() + QUEUE_SPOOL_SLACK);

  struct policy_verdict v = { 0 };
  const char *why;
  if (!queue_channel_ask(channel, pidtext, &v, deadline_in(ASK_TIMEOUT_MS), &why)) {
    warn("no verdict: ", why, (char *)0);
    leave(QQ_TEMP_REJECT);
  }
  close(channel);
  if (!whole) {
    /* qmail-idcheck refuses it with 552: it counts the same bytes */
    warn("message too big", (char *)0);
    leave(QQ_PERM_REJECT);
  }
  verdict_carry_out(&v);
  if (v.nedits) message = edits_apply(&v, message);
  headers_prepend(&v, message);
  const char *filter = getenv("IDCHECK_FILTER");
  if (v.action == ACT_FILTER && filter && *filter) {
    int filtered = filter_run(filter, message);
    close(message);
    message = filtered;
  }
  policy_verdict_free(&v);

  /* the queue reads fd 0 from its offset: the headers' first byte */
  if (dup2(message, 0) < 0) _exit(QQ_INTERNAL);
  queue_exec(queue);
}
