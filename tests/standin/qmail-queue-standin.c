/* qmail-queue-standin: a qmail-queue that stores into a directory.
 *
 * Speaks qmail-queue's protocol: the message on fd 0, read to EOF first,
 * then the envelope on fd 1 ("F<sender>\0", "T<rcpt>\0"..., "\0"). Stores
 * them unchanged in $STANDIN_QUEUE as <name>.msg and <name>.env, where
 * <name> is 20 digits of nanoseconds since the epoch, '.', and the pid, so
 * names sort in arrival order. Both are written under a .tmp name and
 * renamed, .env last: a reader that sees <name>.env may read both.
 *
 * Exit codes are qmail-queue's: 0 stored; 11 address too long; 53 write
 * error; 54 read error or envelope cut short; 61 no STANDIN_QUEUE or cannot
 * chdir there; 63 cannot create a file; 66 cannot rename; 91 bad envelope.
 *
 * Test knobs: STANDIN_QUEUE_SLEEP=seconds (may be fractional) before any
 * reading; STANDIN_QUEUE_EXIT=N reads all input, stores nothing, exits N;
 * STANDIN_QUEUE_TEXT=text is written to fd 6 (notqmail's error channel)
 * just before exiting, e.g. "Dno thanks" with STANDIN_QUEUE_EXIT=82. */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "scan.h"
#include "stralloc.h"

#define ADDR 1003  /* qmail-queue refuses an address this long (with the NUL) */

static void __attribute__((noreturn)) finish(int code)
{
  const char *text = getenv("STANDIN_QUEUE_TEXT");
  if (text) {
    /* best effort: fd 6 exists only under a notqmail-like qmail-smtpd */
    size_t len = strlen(text);
    while (len) {
      ssize_t w = write(6, text, len);
      if (w == -1 && errno == EINTR) continue;
      if (w <= 0) break;
      text += w;
      len -= (size_t)w;
    }
  }
  _exit(code);
}

static void sleep_if_asked(void)
{
  const char *x = getenv("STANDIN_QUEUE_SLEEP");
  if (!x) return;
  double seconds = strtod(x, 0);
  if (!(seconds > 0)) return;
  struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static int write_all(int fd, const char *s, size_t len)
{
  while (len) {
    ssize_t w = write(fd, s, len);
    if (w == -1) {
      if (errno == EINTR) continue;
      return -1;
    }
    s += w;
    len -= (size_t)w;
  }
  return 0;
}

/* Copies fd to EOF: into out_fd if >= 0, else into sa if set, else nowhere.
 * 0 done, 54 read error, 53 write error, 51 out of memory. */
static int drain(int fd, int out_fd, stralloc *sa)
{
  char buf[65536];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r == 0) return 0;
    if (r == -1) {
      if (errno == EINTR) continue;
      return 54;
    }
    if (out_fd >= 0 && write_all(out_fd, buf, (size_t)r) == -1) return 53;
    if (sa && !stralloc_catb(sa, buf, (size_t)r)) return 51;
  }
}

/* qmail-queue's checks: 'F', an address, then 'T' addresses until an empty
 * one. Stricter than qmail-queue on purpose: no recipient, or bytes after
 * the final NUL, are bugs in whatever fed us, so 91. */
static int envelope_check(const stralloc *env)
{
  size_t pos = 0;
  int recipients = 0;
  if (env->len == 0) return 54;
  if (env->s[0] != 'F') return 91;
  for (;;) {
    ++pos;                          /* past 'F' or 'T' */
    size_t start = pos;
    while (pos < env->len && env->s[pos]) {
      if (pos - start + 1 >= ADDR) return 11;
      ++pos;
    }
    if (pos >= env->len) return 54;  /* address not terminated */
    ++pos;                          /* past its NUL */
    if (pos >= env->len) return 54;  /* no final NUL */
    if (!env->s[pos]) break;
    if (env->s[pos] != 'T') return 91;
    ++recipients;
  }
  if (!recipients || pos + 1 != env->len) return 91;
  return 0;
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  sleep_if_asked();

  const char *forced = getenv("STANDIN_QUEUE_EXIT");
  if (forced) {
    unsigned long code = 0;
    scan_ulong(forced, &code);
    drain(0, -1, 0);
    drain(1, -1, 0);
    finish((int)(code & 255));
  }

  const char *dir = getenv("STANDIN_QUEUE");
  if (!dir || chdir(dir) == -1) finish(61);

  char name[64], msg_tmp[80], msg_fn[80];
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  snprintf(name, sizeof name, "%020llu.%lu",
           (unsigned long long)now.tv_sec * 1000000000ULL + (unsigned long long)now.tv_nsec,
           (unsigned long)getpid());
  snprintf(msg_tmp, sizeof msg_tmp, "%s.msg.tmp", name);
  snprintf(msg_fn, sizeof msg_fn, "%s.msg", name);

  int msg_fd = open(msg_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (msg_fd == -1) finish(63);
  int r = drain(0, msg_fd, 0);
  if (!r && fsync(msg_fd) == -1) r = 53;
  if (close(msg_fd) == -1 && !r) r = 53;

  stralloc env = {0};
  if (!r) r = drain(1, -1, &env);
  if (!r) r = envelope_check(&env);
  if (r) {
    unlink(msg_tmp);
    finish(r);
  }

  char env_tmp[80], env_fn[80];
  snprintf(env_tmp, sizeof env_tmp, "%s.env.tmp", name);
  snprintf(env_fn, sizeof env_fn, "%s.env", name);
  int env_fd = open(env_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (env_fd == -1) { unlink(msg_tmp); finish(63); }
  if (write_all(env_fd, env.s, env.len) == -1 || fsync(env_fd) == -1) r = 53;
  if (close(env_fd) == -1 && !r) r = 53;
  if (!r && rename(msg_tmp, msg_fn) == -1) r = 66;
  if (!r && rename(env_tmp, env_fn) == -1) { unlink(msg_fn); r = 66; }
  if (r) {
    unlink(msg_tmp);
    unlink(env_tmp);
    finish(r);
  }
  finish(0);
}
