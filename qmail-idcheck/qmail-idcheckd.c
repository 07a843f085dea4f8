/* qmail-idcheckd: the warm checkID server.
 *
 *   qmail-idcheckd [-n workers] [-m maxrequests] [-t calllimit] [-c maxconns]
 *                  [-i idle] /path/to/socket
 *
 * One master process (no Python in it) listens on a Unix stream socket and
 * holds every client connection: qmail-idcheck connects at its session's
 * first checkID call (IDCHECK_SERVER) and keeps the connection for the
 * session's later calls. A few preforked workers have each started an
 * interpreter and imported the policy (python_embed.h) before they take
 * work. When a connection has a request waiting, the master passes the
 * connection (SCM_RIGHTS) to an idle worker; the worker reads one request
 * frame, answers it with py_serve (the same frames and code as
 * qmail-idcheck-python, so the same results), hands the connection back and
 * waits for the next one. Any worker serves any call, so a session idle
 * between its calls (the client is sending DATA) holds no worker.
 *
 * Workers that die are replaced; a worker is retired after maxrequests calls,
 * and killed when its call runs past the call limit or when the session that
 * asked hangs up mid-call (it gave up at IDCHECK_CALLTIMEOUT). SIGHUP
 * replaces every worker as it becomes idle (an edited policy is imported
 * afresh); SIGTERM stops: in-flight calls get a few seconds, then everything
 * ends and the socket is removed. One log line per worker event, on stderr.
 * Every wait has a deadline but one: an idle worker's wait for its next
 * connection is deliberately unbounded; the master closing the channel (EOF)
 * or dying (PR_SET_PDEATHSIG) ends it. */
#include "python_embed.h"
#include "python_log.h"
#include "netstring.h"
#include "policy_wire.h"
#include "deadline.h"
#include "wait_deadline.h"
#include "stralloc.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define USAGE "usage: qmail-idcheckd [-n workers] [-m maxrequests] [-t calllimit] " \
              "[-c maxconns] [-i idle] /path/to/socket\n"

#define IO_LIMIT_MS 10000        /* a worker's read of one request, write of one reply */
#define HANGUP_GRACE_MS 200      /* a busy worker whose client hung up: let it finish */
#define STOP_GRACE_MS 5000       /* SIGTERM: in-flight calls may finish this long */
#define YOUNG_MS 1000            /* a worker dying younger than this is respawned later */
#define TICK_MS 1000

/* ---- settings ---- */

static int nworkers = 2;
static unsigned long maxrequests = 10000;
static int64_t calllimit_ms = 120 * 1000;
static int maxconns = 1000;
static int64_t idle_ms = 1800 * 1000;
static const char *sockpath;

/* ---- logging ---- */

static void say(const char *fmt, ...)
{
  char line[600];
  int n = snprintf(line, 32, "qmail-idcheckd: ");
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (m < 0) return;
  size_t len = (size_t)n + ((size_t)m < sizeof line - (size_t)n - 1 ? (size_t)m : sizeof line - (size_t)n - 2);
  line[len++] = '\n';
  int saved = errno;
  while (write(2, line, len) < 0 && errno == EINTR) {}
  errno = saved;
}

static void die(const char *what)
{
  say("fatal: %s: %s", what, strerror(errno));
  _exit(111);
}

/* ---- the worker ---- */

/* msg carries one byte (*byte) and room for one descriptor (SCM_RIGHTS) in
 * cbuf, CMSG_SPACE(sizeof(int)) bytes. */
static void fd_msg_init(struct msghdr *msg, struct iovec *iov, char *byte, char *cbuf)
{
  iov->iov_base = byte;
  iov->iov_len = 1;
  memset(msg, 0, sizeof *msg);
  msg->msg_iov = iov;
  msg->msg_iovlen = 1;
  msg->msg_control = cbuf;
  msg->msg_controllen = CMSG_SPACE(sizeof(int));
}

/* Send one status byte to the master: 'R' ready, 'k' done (keep the
 * connection), 'x' done (drop it). Waits at most IO_LIMIT_MS for room; news
 * that cannot be sent is dropped (a master gone or stuck: its call limit or
 * EOF on the channel ends this worker). */
static void worker_tell(int ctl, char c)
{
  deadline_t deadline = deadline_in(IO_LIMIT_MS);
  for (;;) {
    if (send(ctl, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) return;
    if (errno == EINTR) continue;
    if (errno != EAGAIN || fd_wait(ctl, POLLOUT, deadline) != 1) return;
  }
}

/* The next connection from the master, -1 when the master says stop (EOF).
 * The one wait without a deadline: an idle worker waits as long as there is
 * no work; the master closing the channel, or dying (PR_SET_PDEATHSIG), ends it. */
static int worker_take(int ctl)
{
  char byte;
  char cbuf[CMSG_SPACE(sizeof(int))];
  for (;;) {
    struct iovec iov;
    struct msghdr msg;
    fd_msg_init(&msg, &iov, &byte, cbuf);
    void *gil = py_io_begin();
    ssize_t n = recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC);
    int e = errno;
    py_io_end(gil);
    if (n < 0 && e == EINTR) continue;
    if (n <= 0) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS
        && c->cmsg_len == CMSG_LEN(sizeof(int))) {
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof fd);
      return fd;
    }
    /* a message without a descriptor: nothing to do, keep waiting */
  }
}

/* One call on fd: 1 answered (keep the connection), 0 drop it. */
static int worker_call(int fd, stralloc *in, stralloc *out)
{
  struct ucred cred;
  socklen_t cl = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 && cred.pid > 0)
    log_set_pid((long)cred.pid);
  deadline_t deadline = deadline_in(IO_LIMIT_MS);
  in->len = 0;
  long flen;
  for (;;) {
    flen = in->len ? netstring_frame(in->s, in->len, WIRE_MAX_FRAME) : 0;
    if (flen < 0) { log_python("qmail-idcheckd: malformed request frame"); return 0; }
    if (flen > 0) break;
    if (!stralloc_readyplus(in, 65536)) return 0;
    void *gil = py_io_begin();
    ssize_t n = read_deadline(fd, in->s + in->len, 65536, deadline);
    py_io_end(gil);
    if (n <= 0) return 0;   /* the session went away, or never finished its request */
    in->len += (size_t)n;
  }
  if ((size_t)flen != in->len) {
    log_python("qmail-idcheckd: more than one request at once");
    return 0;
  }
  const char *payload;
  size_t plen, pos = 0;
  if (netstring_next(in->s, (size_t)flen, &pos, &payload, &plen) != 1) return 0;
  out->len = 0;
  int r = py_serve(payload, plen, out);
  if (r <= 0) {
    log_python(r == 0 ? "qmail-idcheckd: malformed request" : "qmail-idcheckd: out of memory");
    return 0;
  }
  void *gil = py_io_begin();
  r = write_all_deadline(fd, out->s, out->len, deadline_in(IO_LIMIT_MS));
  py_io_end(gil);
  return r == 0;
}

static void worker_main(int ctl)
{
  /* the channel moves to fd 3; nothing else of the master's stays open */
  if (ctl != 3) {
    if (dup2(ctl, 3) < 0) _exit(111);
    ctl = 3;
  }
  if (close_range(4, ~0U, 0) < 0)
    for (int fd = 4; fd < 4096; ++fd) close(fd);
  fcntl(ctl, F_SETFD, FD_CLOEXEC);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0 && null != 0) { dup2(null, 0); close(null); }
  dup2(2, 1);                   /* print() goes to the log, as in qmail-idcheck-python */

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigaction(SIGTERM, &sa, 0);
  sigaction(SIGHUP, &sa, 0);
  sigaction(SIGINT, &sa, 0);
  sigaction(SIGCHLD, &sa, 0);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, 0);   /* a session gone: EPIPE, not death */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, 0);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() == 1) _exit(0);

  py_start();                   /* failures are logged; calls then answer FAULT */
  py_preload();
  worker_tell(ctl, 'R');

  stralloc in = {0}, out = {0};
  for (;;) {
    int fd = worker_take(ctl);
    if (fd < 0) _exit(0);       /* retired, or the master stops */
    int keep = worker_call(fd, &in, &out);
    close(fd);
    worker_tell(ctl, keep ? 'k' : 'x');
    /* a large request or reply does not stay resident */
    if (in.a > (1u << 20)) { free(in.s); in.s = 0; in.a = in.len = 0; }
    if (out.a > (1u << 20)) { free(out.s); out.s = 0; out.a = out.len = 0; }
  }
}

/* ---- the master's state ---- */

enum wstate { W_EMPTY, W_STARTING, W_IDLE, W_BUSY };
struct worker {
  enum wstate state;
  pid_t pid;
  int ctl;                      /* -1: closed (retired, or dying) */
  int conn;                     /* W_BUSY: the connection it serves */
  int64_t started, since, kill_at, respawn_at;
  unsigned long served;
  int retire;                   /* retire when the current call is done (SIGHUP) */
  const char *kill_why;
};
enum cstate { C_FREE, C_IDLE, C_QUEUED, C_BUSY };
struct conn {
  enum cstate state;
  int fd;
  pid_t peer;
  int64_t last;
};

static struct worker *workers;
static struct conn *conns;
static int nconns;              /* connections open */
static int *queue;              /* connections with a request waiting, FIFO */
static int *queue_scratch;
static int qhead, qlen;
static int listenfd = -1;
static dev_t sock_dev;
static ino_t sock_ino;
static int64_t accept_resume;   /* out of descriptors: listenfd rests until then */

struct kid { pid_t pid; int slot; };
static struct kid *kids;        /* every worker not yet reaped, and its slot */
static int nkids, akids;

static void kid_add(pid_t pid, int slot)
{
  if (nkids == akids) {
    int a = akids ? akids * 2 : 16;
    struct kid *k = realloc(kids, (size_t)a * sizeof *k);
    if (!k) return;   /* then its end is logged without the slot number */
    kids = k;
    akids = a;
  }
  kids[nkids].pid = pid;
  kids[nkids++].slot = slot;
}

/* Forget pid; its slot number (1-based), 0 if unknown. */
static int kid_del(pid_t pid)
{
  for (int i = 0; i < nkids; ++i)
    if (kids[i].pid == pid) {
      int slot = kids[i].slot;
      kids[i] = kids[--nkids];
      return slot;
    }
  return 0;
}

static volatile sig_atomic_t got_term, got_hup, got_chld;
static void on_signal(int sig)
{
  if (sig == SIGTERM || sig == SIGINT) got_term = 1;
  else if (sig == SIGHUP) got_hup = 1;
  else if (sig == SIGCHLD) got_chld = 1;
}

static int widx(const struct worker *w) { return (int)(w - workers) + 1; }

/* ---- connections ---- */

static void conn_close(int c)
{
  if (conns[c].state == C_FREE) return;
  close(conns[c].fd);
  conns[c].state = C_FREE;
  conns[c].fd = -1;
  --nconns;
}

/* The queue has room for 2 * maxconns entries: at most maxconns are live;
 * the others are connections closed while queued, skipped when popped (or
 * dropped here when the queue is full). */
static void queue_push(int c)
{
  int cap = 2 * maxconns;
  if (qlen == cap) {
    /* rotate to the start, then keep the live ones in order */
    int n = 0;
    for (int i = 0; i < qlen; ++i) {
      int q = queue[(qhead + i) % cap];
      queue_scratch[i] = q;
    }
    for (int i = 0; i < qlen; ++i)
      if (conns[queue_scratch[i]].state == C_QUEUED) queue[n++] = queue_scratch[i];
    qhead = 0;
    qlen = n;
  }
  queue[(qhead + qlen) % cap] = c;
  ++qlen;
  conns[c].state = C_QUEUED;
}

static int queue_pop(void)
{
  while (qlen) {
    int c = queue[qhead];
    qhead = (qhead + 1) % (2 * maxconns);
    --qlen;
    if (conns[c].state == C_QUEUED) return c;   /* skip those closed meanwhile */
  }
  return -1;
}

static void accept_some(void)
{
  for (int i = 0; i < 64 && nconns < maxconns; ++i) {
    int fd = accept4(listenfd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        say("cannot accept: %s (trying again in 1 s)", strerror(errno));
        accept_resume = now_ms() + 1000;
      }
      return;
    }
    int c = 0;
    while (conns[c].state != C_FREE) ++c;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    conns[c].peer = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 ? cred.pid : 0;
    conns[c].fd = fd;
    conns[c].state = C_IDLE;
    conns[c].last = now_ms();
    ++nconns;
  }
}

/* ---- workers ---- */

/* c is busy with a worker that is to be killed because its session hung up:
 * the hang-up would show on every poll. */
static int conn_hung_up(int c)
{
  for (int i = 0; i < nworkers; ++i)
    if (workers[i].state == W_BUSY && workers[i].conn == c && workers[i].kill_at) return 1;
  return 0;
}

static void worker_spawn(struct worker *w)
{
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    say("cannot create a worker channel: %s", strerror(errno));
    w->state = W_EMPTY;
    w->respawn_at = now_ms() + YOUNG_MS;
    return;
  }
  pid_t pid = fork();
  if (pid < 0) {
    say("cannot fork a worker: %s", strerror(errno));
    close(sv[0]);
    close(sv[1]);
    w->state = W_EMPTY;
    w->respawn_at = now_ms() + YOUNG_MS;
    return;
  }
  if (pid == 0) {
    close(sv[0]);
    worker_main(sv[1]);
    _exit(0);
  }
  close(sv[1]);
  kid_add(pid, widx(w));
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  w->pid = pid;
  w->ctl = sv[0];
  w->state = W_STARTING;
  w->conn = -1;
  w->started = w->since = now_ms();
  w->kill_at = 0;
  w->served = 0;
  w->retire = 0;
  w->kill_why = 0;
  say("worker %d pid %d started", widx(w), (int)pid);
}

/* Close the worker's channel: an idle worker exits at once; the slot is free
 * for a replacement, the old process is reaped whenever it ends. */
static void worker_let_go(struct worker *w)
{
  if (w->ctl >= 0) close(w->ctl);
  w->ctl = -1;
  w->state = W_EMPTY;
  w->respawn_at = 0;
}

static void worker_kill(struct worker *w, const char *why)
{
  say("worker %d pid %d killed: %s", widx(w), (int)w->pid, why);
  kill(w->pid, SIGKILL);
  if (w->state == W_BUSY && w->conn >= 0) conn_close(w->conn);
  w->conn = -1;
  worker_let_go(w);
}

/* A worker's channel closed or failed without a status: it is dying. */
static void worker_lost(struct worker *w)
{
  if (w->state == W_BUSY && w->conn >= 0) {
    say("worker %d pid %d died mid-call (session pid %d)", widx(w), (int)w->pid,
        (int)conns[w->conn].peer);
    conn_close(w->conn);    /* the session sees EOF: a fault, never a hang */
  }
  w->conn = -1;
  worker_let_go(w);
  w->respawn_at = now_ms() - w->started < YOUNG_MS ? now_ms() + YOUNG_MS : 0;
}

static void worker_status(struct worker *w)
{
  char buf[8];
  ssize_t n = recv(w->ctl, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) { worker_lost(w); return; }
  if (buf[0] == 'R' && w->state == W_STARTING) {
    say("worker %d pid %d ready in %ld ms", widx(w), (int)w->pid, (long)(now_ms() - w->started));
    w->state = W_IDLE;
    if (w->retire) {
      say("worker %d pid %d retired (reload)", widx(w), (int)w->pid);
      worker_let_go(w);
    }
    return;
  }
  if ((buf[0] == 'k' || buf[0] == 'x') && w->state == W_BUSY) {
    int c = w->conn;
    w->conn = -1;
    w->state = W_IDLE;
    w->kill_at = 0;
    ++w->served;
    if (c >= 0 && conns[c].state == C_BUSY) {
      if (buf[0] == 'k') {
        conns[c].state = C_IDLE;
        conns[c].last = now_ms();
      } else {
        conn_close(c);
      }
    }
    if (w->served >= maxrequests) {
      say("worker %d pid %d retired after %lu requests", widx(w), (int)w->pid, w->served);
      worker_let_go(w);
    } else if (w->retire) {
      say("worker %d pid %d retired (reload)", widx(w), (int)w->pid);
      worker_let_go(w);
    }
    return;
  }
  say("worker %d pid %d said something unexpected", widx(w), (int)w->pid);
  kill(w->pid, SIGKILL);
  worker_lost(w);
}

static int worker_give(struct worker *w, int c)
{
  char byte = 'c';
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov;
  struct msghdr msg;
  fd_msg_init(&msg, &iov, &byte, cbuf);
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &conns[c].fd, sizeof(int));
  ssize_t n;
  while ((n = sendmsg(w->ctl, &msg, MSG_DONTWAIT | MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
  if (n != 1) {
    kill(w->pid, SIGKILL);
    worker_lost(w);
    return 0;
  }
  w->state = W_BUSY;
  w->conn = c;
  w->since = now_ms();
  conns[c].state = C_BUSY;
  return 1;
}

static void dispatch(void)
{
  for (int i = 0; i < nworkers && qlen; ++i) {
    struct worker *w = &workers[i];
    if (w->state != W_IDLE) continue;
    int c = queue_pop();
    if (c < 0) return;
    if (!worker_give(w, c)) queue_push(c);   /* it goes to the next one */
  }
}

static void reap(void)
{
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    int slot = kid_del(pid);
    char how[48];
    if (WIFSIGNALED(status)) snprintf(how, sizeof how, "signal %d", WTERMSIG(status));
    else snprintf(how, sizeof how, "exit %d", WEXITSTATUS(status));
    struct worker *w = 0;
    for (int i = 0; i < nworkers; ++i)
      if (workers[i].state != W_EMPTY && workers[i].pid == pid) w = &workers[i];
    if (w) {
      say("worker %d pid %d ended (%s)", widx(w), (int)pid, how);
      worker_lost(w);
    } else {
      say("worker %d pid %d ended (%s)", slot, (int)pid, how);
    }
  }
}

/* ---- the socket ---- */

static void listen_on(const char *path)
{
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sun.sun_path) { errno = ENAMETOOLONG; die(path); }
  strcpy(sun.sun_path, path);

  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) { errno = EEXIST; die("not a socket, left alone"); }
    /* non-blocking: a server with a full backlog answers EAGAIN, at once */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0) die("socket");
    if (connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0 || errno == EAGAIN) {
      say("fatal: another server answers on %s", path);
      _exit(111);
    }
    if (errno != ECONNREFUSED && errno != ENOENT) die("cannot probe the socket");
    close(probe);
    if (unlink(path) < 0 && errno != ENOENT) die("cannot remove the stale socket");
    say("removed a stale socket %s", path);
  }
  listenfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listenfd < 0) die("socket");
  mode_t old = umask(077);      /* srw-------: only our own user connects */
  int r = bind(listenfd, (struct sockaddr *)&sun, sizeof sun);
  umask(old);
  if (r < 0) die("cannot bind the socket");
  if (chmod(path, 0600) < 0) die("cannot chmod the socket");
  if (listen(listenfd, SOMAXCONN) < 0) die("listen");
  if (stat(path, &st) == 0) { sock_dev = st.st_dev; sock_ino = st.st_ino; }
}

static void unlisten(void)
{
  if (listenfd < 0) return;
  struct stat st;
  /* only our own socket: a newer server may have replaced it already */
  if (stat(sockpath, &st) == 0 && st.st_dev == sock_dev && st.st_ino == sock_ino)
    unlink(sockpath);
  close(listenfd);
  listenfd = -1;
}

/* ---- options ---- */

static long number(const char *s, char opt, long lo, long hi)
{
  char *end;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || !*s || *end || errno || v < lo || v > hi) {
    say("fatal: -%c wants a number from %ld to %ld", opt, lo, hi);
    _exit(100);
  }
  return v;
}

static void options(int argc, char **argv)
{
  int opt;
  while ((opt = getopt(argc, argv, "n:m:t:c:i:")) != -1) {
    switch (opt) {
    case 'n': nworkers = (int)number(optarg, 'n', 1, 256); break;
    case 'm': maxrequests = (unsigned long)number(optarg, 'm', 1, LONG_MAX); break;
    case 't': calllimit_ms = number(optarg, 't', 1, 86400) * 1000; break;
    case 'c': maxconns = (int)number(optarg, 'c', 1, 100000); break;
    case 'i': idle_ms = number(optarg, 'i', 1, 86400 * 7) * 1000; break;
    default:
      if (write(2, USAGE, sizeof USAGE - 1) < 0) {}
      _exit(100);
    }
  }
  if (optind != argc - 1) {
    if (write(2, USAGE, sizeof USAGE - 1) < 0) {}
    _exit(100);
  }
  sockpath = argv[optind];
}

/* Enough descriptors for maxconns connections and the workers' channels. */
static void fd_room(void)
{
  struct rlimit rl;
  rlim_t want = (rlim_t)maxconns + (rlim_t)nworkers + 32;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want) return;
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want) {
    maxconns = (int)rl.rlim_cur - nworkers - 32;
    if (maxconns < 1) maxconns = 1;
    say("descriptor limit %ld: at most %d connections", (long)rl.rlim_cur, maxconns);
  }
}

/* ---- the master ---- */

int main(int argc, char **argv)
{
  options(argc, argv);
  fd_room();

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigset_t block;
  sigemptyset(&block);
  int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD };
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; ++i) {
    sigaction(sigs[i], &sa, 0);
    sigaddset(&block, sigs[i]);
  }
  signal(SIGPIPE, SIG_IGN);
  sigset_t waitmask;            /* the signals arrive only inside ppoll */
  sigprocmask(SIG_BLOCK, &block, &waitmask);
  sigdelset(&waitmask, SIGTERM);
  sigdelset(&waitmask, SIGINT);
  sigdelset(&waitmask, SIGHUP);
  sigdelset(&waitmask, SIGCHLD);

  workers = calloc((size_t)nworkers, sizeof *workers);
  conns = calloc((size_t)maxconns, sizeof *conns);
  queue = calloc((size_t)maxconns * 2, sizeof *queue);
  queue_scratch = calloc((size_t)maxconns * 2, sizeof *queue);
  struct pollfd *pfd = calloc((size_t)(1 + nworkers + maxconns), sizeof *pfd);
  int *pwho = calloc((size_t)(1 + nworkers + maxconns), sizeof *pwho);
  if (!workers || !conns || !queue || !queue_scratch || !pfd || !pwho) die("out of memory");
  for (int c = 0; c < maxconns; ++c) conns[c].fd = -1;
  for (int i = 0; i < nworkers; ++i) workers[i].ctl = -1;

  listen_on(sockpath);
  say("listening on %s: %d workers, %lu requests each, call limit %ld s, "
      "at most %d connections", sockpath, nworkers, maxrequests,
      (long)(calllimit_ms / 1000), maxconns);
  for (int i = 0; i < nworkers; ++i) worker_spawn(&workers[i]);

  int64_t stop_at = 0;
  for (;;) {
    int64_t now = now_ms();

    if (got_chld) { got_chld = 0; reap(); }
    if (got_hup) {
      got_hup = 0;
      say("reload: replacing every worker as it becomes idle");
      for (int i = 0; i < nworkers; ++i) {
        struct worker *w = &workers[i];
        if (w->state == W_EMPTY) continue;
        if (w->state == W_IDLE) {
          say("worker %d pid %d retired (reload)", widx(w), (int)w->pid);
          worker_let_go(w);
        } else {
          w->retire = 1;
        }
      }
    }
    if (got_term && !stop_at) {
      say("stopping: no new connections, in-flight calls get %d s", STOP_GRACE_MS / 1000);
      stop_at = now + STOP_GRACE_MS;
      unlisten();
      for (int c = 0; c < maxconns; ++c)
        if (conns[c].state == C_IDLE || conns[c].state == C_QUEUED) conn_close(c);
      qlen = 0;
    }
    if (stop_at) {
      int busy = 0;
      for (int i = 0; i < nworkers; ++i) {
        struct worker *w = &workers[i];
        if (w->state == W_BUSY && now < stop_at) busy = 1;
        else if (w->state == W_BUSY) worker_kill(w, "still busy at stop");
        else if (w->state != W_EMPTY) worker_let_go(w);
      }
      if (!busy) break;
    }

    /* housekeeping: call limits, hung-up sessions, idle connections, respawns */
    for (int i = 0; i < nworkers; ++i) {
      struct worker *w = &workers[i];
      if (w->state == W_BUSY && now - w->since >= calllimit_ms)
        worker_kill(w, "a call ran past the call limit");
      else if (w->state == W_STARTING && now - w->started >= calllimit_ms)
        worker_kill(w, "start-up ran past the call limit");
      else if (w->state == W_BUSY && w->kill_at && now >= w->kill_at)
        worker_kill(w, w->kill_why);
      if (w->state == W_EMPTY && !stop_at && now >= w->respawn_at) worker_spawn(w);
    }
    for (int c = 0; c < maxconns; ++c)
      if (conns[c].state == C_IDLE && now - conns[c].last >= idle_ms) conn_close(c);
    dispatch();

    /* wait */
    int n = 0;
    int64_t wake = now + TICK_MS;
    if (listenfd >= 0 && nconns < maxconns) {
      if (now >= accept_resume) {
        pfd[n] = (struct pollfd){ listenfd, POLLIN, 0 };
        pwho[n++] = INT_MIN;
      } else if (accept_resume < wake) {
        wake = accept_resume;
      }
    }
    for (int i = 0; i < nworkers; ++i) {
      struct worker *w = &workers[i];
      if (w->ctl >= 0) {
        pfd[n] = (struct pollfd){ w->ctl, POLLIN, 0 };
        pwho[n++] = -1 - i;
      }
      if (w->state == W_BUSY && w->since + calllimit_ms < wake) wake = w->since + calllimit_ms;
      if (w->state == W_STARTING && w->started + calllimit_ms < wake) wake = w->started + calllimit_ms;
      if (w->state == W_BUSY && w->kill_at && w->kill_at < wake) wake = w->kill_at;
      if (w->state == W_EMPTY && w->respawn_at < wake) wake = w->respawn_at;
    }
    if (stop_at && stop_at < wake) wake = stop_at;
    for (int c = 0; c < maxconns; ++c) {
      if (conns[c].state == C_FREE) continue;
      if (conns[c].state == C_BUSY && conn_hung_up(c)) continue;   /* seen already */
      /* idle: a request, or the session's end; otherwise only a hang-up */
      pfd[n] = (struct pollfd){ conns[c].fd, conns[c].state == C_IDLE ? POLLIN | POLLRDHUP : POLLRDHUP, 0 };
      pwho[n++] = c;
    }
    int64_t left = wake - now;
    if (left < 0) left = 0;
    struct timespec ts = { (time_t)(left / 1000), (long)(left % 1000) * 1000000 };
    int r = ppoll(pfd, (nfds_t)n, &ts, &waitmask);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (r == 0) continue;

    /* the workers' news first: a call done before its session hung up */
    for (int k = 0; k < n; ++k)
      if (pfd[k].revents && pwho[k] < 0 && pwho[k] != INT_MIN) {
        struct worker *w = &workers[-1 - pwho[k]];
        if (w->ctl == pfd[k].fd) worker_status(w);
      }
    for (int k = 0; k < n; ++k) {
      if (!pfd[k].revents || pwho[k] < 0) continue;
      int c = pwho[k];
      if (conns[c].state == C_FREE || conns[c].fd != pfd[k].fd) continue;
      short ev = pfd[k].revents;
      if (conns[c].state == C_IDLE) {
        if (ev & (POLLRDHUP | POLLHUP | POLLERR)) conn_close(c);   /* the session ended */
        else if (ev & POLLIN) queue_push(c);
      } else if (conns[c].state == C_QUEUED) {
        if (ev & (POLLRDHUP | POLLHUP | POLLERR)) conn_close(c);   /* gave up waiting */
      } else if (ev & (POLLRDHUP | POLLHUP | POLLERR)) {
        /* gave up mid-call (IDCHECK_CALLTIMEOUT): the answer is unwanted */
        for (int i = 0; i < nworkers; ++i)
          if (workers[i].state == W_BUSY && workers[i].conn == c && !workers[i].kill_at) {
            workers[i].kill_at = now_ms() + HANGUP_GRACE_MS;
            workers[i].kill_why = "its session hung up mid-call";
          }
      }
    }
    for (int k = 0; k < n; ++k)
      if (pwho[k] == INT_MIN && (pfd[k].revents & POLLIN)) accept_some();
    dispatch();
  }

  /* stop: every worker's channel is closed; wait for them briefly */
  for (int i = 0; i < nworkers; ++i)
    if (workers[i].state != W_EMPTY) worker_let_go(&workers[i]);
  for (int c = 0; c < maxconns; ++c) conn_close(c);
  /* One deadline for all: wait_deadline kills at its end, so past it what is
   * left is killed at once and reaped (SIGKILL is prompt). */
  deadline_t d = deadline_in(2000);
  while (nkids) {
    pid_t pid = kids[nkids - 1].pid;
    wait_deadline(pid, d, 0);
    kid_del(pid);
  }
  free(pfd);
  free(pwho);
  say("stopped");
  return 0;
}
