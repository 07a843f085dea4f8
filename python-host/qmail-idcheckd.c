/* qmail-idcheckd: the warm checkID server.
 *
 *   qmail-idcheckd [-n workers] [-x maxworkers] [-p perclient] [-k keep]
 *                  [-m maxrequests] [-t calllimit] [-c maxconns] [-i idle]
 *                  /path/to/socket
 *
 * One master process (no Python in it) listens on a Unix stream socket and
 * holds every client connection: qmail-idcheck connects at its session's
 * first checkID call (IDCHECK_SERVER), says whom it serves (the hello, see
 * lib/policy_wire.h) and keeps the connection for the session's later calls.
 * Preforked workers have each started an interpreter and imported the
 * policy (python_embed.h) before they take work. When a connection has a
 * request waiting, the master passes the connection (SCM_RIGHTS) to an idle
 * worker; the worker reads one request frame, answers it with py_serve (the
 * same frames and code as qmail-idcheck-python, so the same results), hands
 * the connection back and waits for the next one. Any worker serves any
 * call, so a session idle between its calls (the client is sending DATA)
 * holds no worker.
 *
 * Isolation: a slow call (a client's own silent DNS server) holds its worker
 * until it ends. So that slow clients cannot starve everyone else, the pool
 * grows beyond its -n workers, up to -x, while calls wait, and one client
 * (an IPv4 address, an IPv6 /64) holds at most -p workers at once: its
 * further calls wait for its own, while other clients' calls go past them.
 * A session holds at most one, as it makes one call at a time. Workers
 * beyond -n that stay idle for -k seconds are retired.
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
#include "policy_wire.h"
#include "deadline.h"
#include "stralloc.h"
#include "ip4.h"
#include "ip6.h"
#include "byte.h"
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

#define USAGE "usage: qmail-idcheckd [-n workers] [-x maxworkers] [-p perclient] [-k keep] " \
              "[-m maxrequests] [-t calllimit] [-c maxconns] [-i idle] /path/to/socket\n"

#define IO_LIMIT_MS 10000        /* a worker's read of one request, write of one reply;
                                    a new connection's wait for its hello */
#define HANGUP_GRACE_MS 200      /* a busy worker whose client hung up: let it finish */
#define STOP_GRACE_MS 5000       /* SIGTERM: in-flight calls may finish this long */
#define REAP_GRACE_MS 2000       /* then the workers' ends are waited for this long */
#define YOUNG_MS 1000            /* a worker dying younger than this is respawned later */
#define MAXWORKERS_DEFAULT 16

/* ---- settings ---- */

static int nworkers = 2;                 /* -n: always started */
static int maxworkers;                   /* -x: the pool's limit while calls wait */
static int perclient = 2;                /* -p: workers one client holds at once */
static int64_t keep_ms = 60 * 1000;      /* -k: a worker beyond -n idle this long retires */
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

/* A connection handed to a worker: the descriptor travels as SCM_RIGHTS,
 * beside it the pid of the session it serves (for the policy's log lines;
 * the master asked SO_PEERCRED once, at accept). */
struct handoff { pid_t session; };

/* msg carries len bytes at data and room for one descriptor (SCM_RIGHTS) in
 * cbuf, CMSG_SPACE(sizeof(int)) bytes. */
static void fd_msg_init(struct msghdr *msg, struct iovec *iov, void *data, size_t len,
                        char *cbuf)
{
  iov->iov_base = data;
  iov->iov_len = len;
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
static int worker_take(int ctl, struct handoff *h)
{
  char cbuf[CMSG_SPACE(sizeof(int))];
  for (;;) {
    struct iovec iov;
    struct msghdr msg;
    fd_msg_init(&msg, &iov, h, sizeof *h, cbuf);
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
      if (n == sizeof *h) return fd;
      close(fd);                /* not the master's message: never happens */
    }
    /* a message without a descriptor: nothing to do, keep waiting */
  }
}

/* One call on fd: 1 answered (keep the connection), 0 drop it. */
static int worker_call(int fd, stralloc *in, stralloc *out)
{
  struct wire_frame f;
  void *gil = py_io_begin();
  enum wire_read r = wire_frame_read_one(fd, in, deadline_in(IO_LIMIT_MS), &f);
  py_io_end(gil);
  if (r == WIRE_MALFORMED) log_python("qmail-idcheckd: malformed request frame");
  if (r == WIRE_EXTRA) log_python("qmail-idcheckd: more than one request at once");
  if (r != WIRE_OK) return 0;   /* or the session went away, or never finished its request */
  out->len = 0;
  int served = py_serve(f.payload, f.plen, out);
  if (served <= 0) {
    log_python(served == 0 ? "qmail-idcheckd: malformed request" : "qmail-idcheckd: out of memory");
    return 0;
  }
  gil = py_io_begin();
  int w = write_all_deadline(fd, out->s, out->len, deadline_in(IO_LIMIT_MS));
  py_io_end(gil);
  return w == 0;
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
    struct handoff h;
    int fd = worker_take(ctl, &h);
    if (fd < 0) _exit(0);       /* retired, or the master stops */
    log_set_pid((long)h.session);
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
  int64_t started;
  int64_t since;                /* W_BUSY: its call's start; W_IDLE: idle since */
  int64_t kill_at, respawn_at;
  unsigned long served;
  int retire;                   /* retire when the current call is done (SIGHUP) */
  const char *kill_why;
};

/* Whom a connection serves, from its hello: an IPv4 address (as ::ffff:a.b.c.d)
 * or an IPv6 /64, the block one site usually has. Unknown: the session
 * is a client of its own. */
struct client {
  int known;
  char key[16];
};

enum cstate { C_FREE, C_HELLO, C_IDLE, C_QUEUED, C_BUSY };
struct conn {
  enum cstate state;
  int fd;
  pid_t peer;                   /* the session's pid (SO_PEERCRED at accept) */
  int64_t last;                 /* C_HELLO: accepted; C_IDLE: its last call ended */
  struct client client;
  int worker;                   /* C_BUSY: the worker serving it */
  int qprev, qnext;             /* C_QUEUED: the wait queue, in order of arrival */
  int held;                     /* C_QUEUED: logged that it waits for its client */
  int open_pos;                 /* its place in open_conns */
};

static struct worker *workers;  /* maxworkers slots; the first nworkers always filled */
static struct conn *conns;      /* maxconns slots */
static int *open_conns;         /* the open ones, dense: loops cost what is open */
static int nconns;
static int *free_conns;         /* a stack of the free slots */
static int nfree;
static int qhead = -1, qtail = -1;   /* connections with a request waiting, FIFO */
static int *wanting;            /* dispatch's scratch: calls that wait for a worker */
static int listenfd = -1;
static dev_t sock_dev;
static ino_t sock_ino;
static int64_t accept_resume;   /* out of descriptors: listenfd rests until then */
static int64_t spawn_hold;      /* a worker died young: the pool grows no sooner */
static int pool_full_said;      /* "pool at its limit" logged, until there is room again */
static int64_t stop_at;         /* SIGTERM: when in-flight calls are cut off */

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
static sigset_t waitmask;       /* the signals arrive only inside ppoll */

static int widx(const struct worker *w) { return (int)(w - workers) + 1; }
static int extra_slot(const struct worker *w) { return w - workers >= nworkers; }

static int64_t earliest(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- clients ---- */

/* The client TCPREMOTEIP names; unknown when it is not an address. */
static void client_parse(struct client *cl, const char *s, size_t len)
{
  char text[64];
  cl->known = 0;
  if (!s || !len || len >= sizeof text) return;
  memcpy(text, s, len);
  text[len] = 0;
  if (scan_ip6(text, cl->key) != len) return;   /* IPv4 comes back v4-mapped */
  if (!ip6_isv4mapped(cl->key)) byte_zero(cl->key + 8, 8);
  cl->known = 1;
}

static int client_same(const struct client *a, const struct client *b)
{
  return a->known && b->known && byte_equal(a->key, 16, b->key);
}

/* For the log: 192.0.2.7, 2001:db8:1:2::/64. */
static const char *client_text(const struct client *cl, char *buf)
{
  if (!cl->known) return "(unknown)";
  size_t n = ip6_isv4mapped(cl->key) ? fmt_ip4(buf, cl->key + 12) : fmt_ip6(buf, cl->key);
  if (!ip6_isv4mapped(cl->key)) { memcpy(buf + n, "/64", 3); n += 3; }
  buf[n] = 0;
  return buf;
}

/* Workers busy with the client's calls. */
static int client_holds(const struct client *cl)
{
  int n = 0;
  for (int i = 0; i < maxworkers; ++i)
    if (workers[i].state == W_BUSY && client_same(&conns[workers[i].conn].client, cl)) ++n;
  return n;
}

/* ---- connections ---- */

static void queue_unlink(int c)
{
  struct conn *k = &conns[c];
  if (k->qprev >= 0) conns[k->qprev].qnext = k->qnext; else qhead = k->qnext;
  if (k->qnext >= 0) conns[k->qnext].qprev = k->qprev; else qtail = k->qprev;
  k->qprev = k->qnext = -1;
}

static void queue_push(int c)
{
  struct conn *k = &conns[c];
  k->qprev = qtail;
  k->qnext = -1;
  if (qtail >= 0) conns[qtail].qnext = c; else qhead = c;
  qtail = c;
  k->state = C_QUEUED;
  k->held = 0;
}

static void conn_close(int c)
{
  struct conn *k = &conns[c];
  if (k->state == C_FREE) return;
  if (k->state == C_QUEUED) queue_unlink(c);
  close(k->fd);
  k->state = C_FREE;
  k->fd = -1;
  int last = open_conns[--nconns];      /* its place goes to the last one */
  open_conns[k->open_pos] = last;
  conns[last].open_pos = k->open_pos;
  free_conns[nfree++] = c;
}

static void conn_add(int fd)
{
  int c = free_conns[--nfree];
  struct conn *k = &conns[c];
  struct ucred cred;
  socklen_t cl = sizeof cred;
  k->peer = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 ? cred.pid : 0;
  k->fd = fd;
  k->state = C_HELLO;
  k->last = now_ms();
  k->client.known = 0;
  k->worker = -1;
  k->qprev = k->qnext = -1;
  k->open_pos = nconns;
  open_conns[nconns++] = c;
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
    conn_add(fd);
  }
}

/* The hello, the first frame on a new connection: whom the session serves.
 * The proxy writes it in one write on an empty socket, so it is here whole
 * when the connection is readable; the request may follow at once. */
static void hello_read(int c)
{
  struct conn *k = &conns[c];
  char buf[WIRE_MAX_HELLO + 1];
  struct wire_opt client;
  ssize_t n = recv(k->fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) { conn_close(c); return; }
  long flen = wire_hello_decode(buf, (size_t)n, &client);
  if (flen <= 0 || recv(k->fd, buf, (size_t)flen, MSG_DONTWAIT) != flen) {
    say("session pid %d sent no valid hello: connection closed", (int)k->peer);
    conn_close(c);
    return;
  }
  client_parse(&k->client, client.present ? client.s : 0, client.len);
  k->state = C_IDLE;
  k->last = now_ms();
  if (n > flen) queue_push(c);          /* its request came with it */
}

/* Close what sat too long: a connection without its hello (IO_LIMIT_MS), an
 * idle one (-i). The earliest such deadline still to come lowers *wake. */
static void conns_expire(int64_t now, int64_t *wake)
{
  for (int i = 0; i < nconns; ++i) {
    int c = open_conns[i];
    int64_t limit;
    if (conns[c].state == C_HELLO) limit = conns[c].last + IO_LIMIT_MS;
    else if (conns[c].state == C_IDLE) limit = conns[c].last + idle_ms;
    else continue;
    if (now >= limit) {
      if (conns[c].state == C_HELLO) say("session pid %d sent no hello: connection closed", (int)conns[c].peer);
      conn_close(c);
      --i;                      /* the last one took its place */
    } else {
      *wake = earliest(*wake, limit);
    }
  }
}

/* ---- workers ---- */

static void worker_spawn(struct worker *w, const char *why)
{
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    say("cannot create a worker channel: %s", strerror(errno));
    w->state = W_EMPTY;
    w->respawn_at = spawn_hold = now_ms() + YOUNG_MS;
    return;
  }
  pid_t pid = fork();
  if (pid < 0) {
    say("cannot fork a worker: %s", strerror(errno));
    close(sv[0]);
    close(sv[1]);
    w->state = W_EMPTY;
    w->respawn_at = spawn_hold = now_ms() + YOUNG_MS;
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
  say("worker %d pid %d started%s", widx(w), (int)pid, why);
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

static void worker_retire(struct worker *w, const char *why)
{
  say("worker %d pid %d retired %s", widx(w), (int)w->pid, why);
  worker_let_go(w);
}

/* The busy worker's call is over: its connection is free of it. */
static struct conn *worker_release(struct worker *w)
{
  struct conn *k = w->conn >= 0 ? &conns[w->conn] : 0;
  if (k) k->worker = -1;
  w->conn = -1;
  return k;
}

static void worker_kill(struct worker *w, const char *why)
{
  say("worker %d pid %d killed: %s", widx(w), (int)w->pid, why);
  kill(w->pid, SIGKILL);
  struct conn *k = worker_release(w);
  if (w->state == W_BUSY && k) conn_close((int)(k - conns));
  worker_let_go(w);
}

/* A worker's channel closed or failed without a status: it is dying. */
static void worker_lost(struct worker *w)
{
  struct conn *k = worker_release(w);
  if (w->state == W_BUSY && k) {
    say("worker %d pid %d died mid-call (session pid %d)", widx(w), (int)w->pid, (int)k->peer);
    conn_close((int)(k - conns));   /* the session sees EOF: a fault, never a hang */
  }
  worker_let_go(w);
  if (now_ms() - w->started < YOUNG_MS) w->respawn_at = spawn_hold = now_ms() + YOUNG_MS;
}

/* The worker is idle again: retire it if it is due, else it waits for work. */
static void worker_idle(struct worker *w)
{
  w->state = W_IDLE;
  w->since = now_ms();
  w->kill_at = 0;
  if (w->served >= maxrequests) {
    char why[48];
    snprintf(why, sizeof why, "after %lu requests", w->served);
    worker_retire(w, why);
  } else if (w->retire) {
    worker_retire(w, "(reload)");
  }
}

static void worker_status(struct worker *w)
{
  char buf[8];
  ssize_t n = recv(w->ctl, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) { worker_lost(w); return; }
  if (buf[0] == 'R' && w->state == W_STARTING) {
    say("worker %d pid %d ready in %ld ms", widx(w), (int)w->pid, (long)(now_ms() - w->started));
    worker_idle(w);
    return;
  }
  if ((buf[0] == 'k' || buf[0] == 'x') && w->state == W_BUSY) {
    struct conn *k = worker_release(w);
    ++w->served;
    if (k && k->state == C_BUSY) {
      if (buf[0] == 'k') {
        k->state = C_IDLE;
        k->last = now_ms();
      } else {
        conn_close((int)(k - conns));
      }
    }
    worker_idle(w);
    return;
  }
  say("worker %d pid %d said something unexpected", widx(w), (int)w->pid);
  kill(w->pid, SIGKILL);
  worker_lost(w);
}

static int worker_give(struct worker *w, int c)
{
  struct handoff h = { conns[c].peer };
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov;
  struct msghdr msg;
  fd_msg_init(&msg, &iov, &h, sizeof h, cbuf);
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &conns[c].fd, sizeof(int));
  ssize_t n;
  while ((n = sendmsg(w->ctl, &msg, MSG_DONTWAIT | MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
  if (n != (ssize_t)sizeof h) {
    kill(w->pid, SIGKILL);
    worker_lost(w);
    return 0;
  }
  w->state = W_BUSY;
  w->conn = c;
  w->since = now_ms();
  conns[c].state = C_BUSY;
  conns[c].worker = (int)(w - workers);
  return 1;
}

/* The session gave up mid-call (IDCHECK_CALLTIMEOUT): the answer is unwanted. */
static void worker_hung_up(struct worker *w)
{
  if (w->kill_at) return;
  w->kill_at = now_ms() + HANGUP_GRACE_MS;
  w->kill_why = "its session hung up mid-call";
}

/* Call limits, hung-up sessions, respawns of the -n workers, retirement of
 * idle ones beyond -n. The earliest deadline still to come lowers *wake. */
static void workers_tend(int64_t now, int64_t *wake)
{
  for (int i = 0; i < maxworkers; ++i) {
    struct worker *w = &workers[i];
    if (w->state == W_BUSY && now - w->since >= calllimit_ms)
      worker_kill(w, "a call ran past the call limit");
    else if (w->state == W_STARTING && now - w->started >= calllimit_ms)
      worker_kill(w, "start-up ran past the call limit");
    else if (w->state == W_BUSY && w->kill_at && now >= w->kill_at)
      worker_kill(w, w->kill_why);
    else if (w->state == W_IDLE && extra_slot(w) && now - w->since >= keep_ms) {
      char why[48];
      snprintf(why, sizeof why, "(idle %ld s)", (long)(keep_ms / 1000));
      worker_retire(w, why);
    }
    if (w->state == W_EMPTY && !extra_slot(w) && !stop_at) {
      if (now >= w->respawn_at) worker_spawn(w, "");
      else *wake = earliest(*wake, w->respawn_at);
    }
    if (w->state == W_BUSY) *wake = earliest(*wake, w->kill_at ? w->kill_at : w->since + calllimit_ms);
    if (w->state == W_STARTING) *wake = earliest(*wake, w->started + calllimit_ms);
    if (w->state == W_IDLE && extra_slot(w)) *wake = earliest(*wake, w->since + keep_ms);
  }
}

/* ---- the pool: who gets a worker, and when it grows ---- */

static struct worker *worker_idle_first(void)
{
  for (int i = 0; i < maxworkers; ++i)        /* the -n workers first: extras go idle */
    if (workers[i].state == W_IDLE) return &workers[i];
  return 0;
}

/* Whether c's client holds its -p workers already, counting the calls
 * ahead of it that wait for a worker in this round. */
static int client_at_limit(int c, int nwanting)
{
  const struct client *cl = &conns[c].client;
  if (!cl->known) return 0;
  int n = client_holds(cl);
  for (int i = 0; i < nwanting && n < perclient; ++i)
    if (client_same(&conns[wanting[i]].client, cl)) ++n;
  return n >= perclient;
}

static void say_held(int c)
{
  char text[IP6_FMT + 8];
  if (conns[c].held) return;
  conns[c].held = 1;
  say("client %s at its limit of %d (-p): session pid %d waits",
      client_text(&conns[c].client, text), perclient, (int)conns[c].peer);
}

/* Start workers beyond -n for calls that wait, up to -x, unless a worker
 * died young a moment ago (a policy that cannot start must not make the
 * server fork in a loop). Workers already starting count. */
static void pool_grow(int nwanting)
{
  int starting = 0;
  for (int i = 0; i < maxworkers; ++i)
    if (workers[i].state == W_STARTING) ++starting;
  int need = nwanting - starting;
  if (need <= 0) { pool_full_said = 0; return; }
  if (now_ms() < spawn_hold) return;
  for (int i = nworkers; i < maxworkers && need > 0; ++i)
    if (workers[i].state == W_EMPTY) {
      worker_spawn(&workers[i], " (calls waiting)");
      if (workers[i].state == W_STARTING) --need;
    }
  if (need > 0 && !pool_full_said) {
    say("pool at its limit of %d workers (-x): calls wait", maxworkers);
    pool_full_said = 1;
  }
}

/* Hand waiting calls to idle workers, in order of arrival, passing over
 * those whose client holds its -p workers already; grow the pool for the
 * rest. */
static void dispatch(void)
{
  if (stop_at) return;
  int nwanting = 0;
  for (int c = qhead; c >= 0; ) {
    int next = conns[c].qnext;
    if (client_at_limit(c, nwanting)) {
      say_held(c);
    } else {
      struct worker *w = worker_idle_first();
      if (w && !worker_give(w, c)) continue;    /* lost that worker: try again */
      if (w) queue_unlink(c);
      else if (nwanting < maxworkers) wanting[nwanting++] = c;
      else break;                               /* more than the pool can take */
    }
    c = next;
  }
  pool_grow(nwanting);
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
    for (int i = 0; i < maxworkers; ++i)
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

static void usage(void)
{
  if (write(2, USAGE, sizeof USAGE - 1) < 0) {}
  _exit(100);
}

static void options(int argc, char **argv)
{
  int opt;
  while ((opt = getopt(argc, argv, "n:x:p:k:m:t:c:i:")) != -1) {
    switch (opt) {
    case 'n': nworkers = (int)number(optarg, 'n', 1, 256); break;
    case 'x': maxworkers = (int)number(optarg, 'x', 1, 256); break;
    case 'p': perclient = (int)number(optarg, 'p', 1, 256); break;
    case 'k': keep_ms = number(optarg, 'k', 1, 86400) * 1000; break;
    case 'm': maxrequests = (unsigned long)number(optarg, 'm', 1, LONG_MAX); break;
    case 't': calllimit_ms = number(optarg, 't', 1, 86400) * 1000; break;
    case 'c': maxconns = (int)number(optarg, 'c', 1, 100000); break;
    case 'i': idle_ms = number(optarg, 'i', 1, 86400 * 7) * 1000; break;
    default: usage();
    }
  }
  if (optind != argc - 1) usage();
  sockpath = argv[optind];
  if (!maxworkers) {
    maxworkers = nworkers > MAXWORKERS_DEFAULT ? nworkers : MAXWORKERS_DEFAULT;
  } else if (maxworkers < nworkers) {
    say("fatal: -x %d is less than -n %d", maxworkers, nworkers);
    _exit(100);
  }
}

/* Enough descriptors for maxconns connections and the workers' channels. */
static void fd_room(void)
{
  struct rlimit rl;
  rlim_t want = (rlim_t)maxconns + (rlim_t)maxworkers + 32;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want) return;
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want) {
    maxconns = (int)rl.rlim_cur - maxworkers - 32;
    if (maxconns < 1) maxconns = 1;
    say("descriptor limit %ld: at most %d connections", (long)rl.rlim_cur, maxconns);
  }
}

/* ---- the master ---- */

static struct pollfd *pfd;
static int *pwho;               /* what pfd[k] is: a connection, -1 - worker, or INT_MIN */

static void state_alloc(void)
{
  workers = calloc((size_t)maxworkers, sizeof *workers);
  conns = calloc((size_t)maxconns, sizeof *conns);
  open_conns = calloc((size_t)maxconns, sizeof *open_conns);
  free_conns = calloc((size_t)maxconns, sizeof *free_conns);
  wanting = calloc((size_t)maxworkers, sizeof *wanting);
  pfd = calloc((size_t)(1 + maxworkers + maxconns), sizeof *pfd);
  pwho = calloc((size_t)(1 + maxworkers + maxconns), sizeof *pwho);
  if (!workers || !conns || !open_conns || !free_conns || !wanting || !pfd || !pwho)
    die("out of memory");
  for (int c = maxconns - 1; c >= 0; --c) {
    conns[c].fd = -1;
    free_conns[nfree++] = c;
  }
  for (int i = 0; i < maxworkers; ++i) workers[i].ctl = -1;
}

static void signals_setup(void)
{
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
  sigprocmask(SIG_BLOCK, &block, &waitmask);
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; ++i) sigdelset(&waitmask, sigs[i]);
}

/* SIGHUP: every worker is replaced as it becomes idle. */
static void reload(void)
{
  say("reload: replacing every worker as it becomes idle");
  for (int i = 0; i < maxworkers; ++i) {
    struct worker *w = &workers[i];
    if (w->state == W_IDLE) worker_retire(w, "(reload)");
    else if (w->state != W_EMPTY) w->retire = 1;
  }
}

/* SIGTERM: no new connections; those without a call in progress are closed. */
static void stop_begin(int64_t now)
{
  say("stopping: no new connections, in-flight calls get %d s", STOP_GRACE_MS / 1000);
  stop_at = now + STOP_GRACE_MS;
  unlisten();
  for (int i = nconns - 1; i >= 0; --i)
    if (conns[open_conns[i]].state != C_BUSY) conn_close(open_conns[i]);
}

/* While stopping: 1 once no call is in progress (calls past the grace are
 * cut off); idle workers are let go as they come. */
static int stop_done(int64_t now)
{
  int busy = 0;
  for (int i = 0; i < maxworkers; ++i) {
    struct worker *w = &workers[i];
    if (w->state == W_BUSY && now < stop_at) busy = 1;
    else if (w->state == W_BUSY) worker_kill(w, "still busy at stop");
    else if (w->state != W_EMPTY) worker_let_go(w);
  }
  return !busy;
}

static void handle_signals(int64_t now)
{
  if (got_chld) { got_chld = 0; reap(); }
  if (got_hup) { got_hup = 0; reload(); }
  if (got_term && !stop_at) stop_begin(now);
}

/* The poll set: the listening socket (unless full or resting), every
 * worker's channel, and every connection: a request or the session's end
 * from an idle one, the hello from a new one, only a hang-up otherwise. */
static int pollset_build(int64_t now, int64_t *wake)
{
  int n = 0;
  if (listenfd >= 0 && nconns < maxconns) {
    if (now >= accept_resume) {
      pfd[n] = (struct pollfd){ listenfd, POLLIN, 0 };
      pwho[n++] = INT_MIN;
    } else {
      *wake = earliest(*wake, accept_resume);
    }
  }
  for (int i = 0; i < maxworkers; ++i)
    if (workers[i].ctl >= 0) {
      pfd[n] = (struct pollfd){ workers[i].ctl, POLLIN, 0 };
      pwho[n++] = -1 - i;
    }
  for (int i = 0; i < nconns; ++i) {
    int c = open_conns[i];
    short ev = POLLRDHUP;
    if (conns[c].state == C_IDLE || conns[c].state == C_HELLO) ev |= POLLIN;
    if (conns[c].state == C_BUSY && workers[conns[c].worker].kill_at) continue;   /* seen */
    pfd[n] = (struct pollfd){ conns[c].fd, ev, 0 };
    pwho[n++] = c;
  }
  return n;
}

static void conn_event(int c, short ev)
{
  int gone = ev & (POLLRDHUP | POLLHUP | POLLERR);
  switch (conns[c].state) {
  case C_HELLO:
    if (gone) conn_close(c); else if (ev & POLLIN) hello_read(c);
    break;
  case C_IDLE:
    if (gone) conn_close(c);            /* the session ended */
    else if (ev & POLLIN) queue_push(c);
    break;
  case C_QUEUED:
    if (gone) conn_close(c);            /* gave up waiting */
    break;
  case C_BUSY:
    if (gone) worker_hung_up(&workers[conns[c].worker]);
    break;
  case C_FREE:
    break;
  }
}

static void events_handle(int n)
{
  /* the workers' news first: a call done before its session hung up */
  for (int k = 0; k < n; ++k)
    if (pfd[k].revents && pwho[k] < 0 && pwho[k] != INT_MIN) {
      struct worker *w = &workers[-1 - pwho[k]];
      if (w->ctl == pfd[k].fd) worker_status(w);
    }
  for (int k = 0; k < n; ++k) {
    int c = pwho[k];
    if (!pfd[k].revents || c < 0) continue;
    if (conns[c].state == C_FREE || conns[c].fd != pfd[k].fd) continue;   /* closed meanwhile */
    conn_event(c, pfd[k].revents);
  }
  for (int k = 0; k < n; ++k)
    if (pwho[k] == INT_MIN && (pfd[k].revents & POLLIN)) accept_some();
}

/* Wait for events or signals until wake: the number of ready descriptors,
 * 0 for none (a deadline, or a signal). */
static int events_wait(int n, int64_t now, int64_t wake)
{
  struct timespec ts, *tsp = 0;
  if (wake != DEADLINE_NONE) {
    int64_t left = wake > now ? wake - now : 0;
    ts = (struct timespec){ (time_t)(left / 1000), (long)(left % 1000) * 1000000 };
    tsp = &ts;
  }
  int r = ppoll(pfd, (nfds_t)n, tsp, &waitmask);
  if (r < 0 && errno != EINTR) die("poll");
  return r < 0 ? 0 : r;
}

/* Stopped: every worker's channel is closed (an idle worker exits at its
 * EOF). Waits for their ends until REAP_GRACE_MS, then SIGKILLs the rest
 * and waits one more second; a process that even SIGKILL does not end (stuck
 * in the kernel) is left to init rather than keep the master forever. */
static void shutdown_reap(void)
{
  for (int i = 0; i < maxworkers; ++i)
    if (workers[i].state != W_EMPTY) worker_let_go(&workers[i]);
  while (nconns) conn_close(open_conns[nconns - 1]);
  int64_t kill_at = now_ms() + REAP_GRACE_MS, give_up = kill_at + 1000;
  int killed = 0;
  for (;;) {
    got_chld = 0;
    reap();
    if (!nkids) return;
    int64_t now = now_ms();
    if (now >= kill_at && !killed) {
      for (int i = 0; i < nkids; ++i) kill(kids[i].pid, SIGKILL);
      killed = 1;
    }
    if (now >= give_up) {
      for (int i = 0; i < nkids; ++i)
        say("worker %d pid %d did not end: left behind", kids[i].slot, (int)kids[i].pid);
      return;
    }
    events_wait(0, now, killed ? give_up : kill_at);   /* until SIGCHLD or the deadline */
  }
}

int main(int argc, char **argv)
{
  options(argc, argv);
  fd_room();
  signals_setup();
  state_alloc();

  listen_on(sockpath);
  say("listening on %s: %d workers (up to %d, %d per client), %lu requests each, "
      "call limit %ld s, at most %d connections", sockpath, nworkers, maxworkers, perclient,
      maxrequests, (long)(calllimit_ms / 1000), maxconns);
  for (int i = 0; i < nworkers; ++i) worker_spawn(&workers[i], "");

  for (;;) {
    int64_t now = now_ms(), wake = DEADLINE_NONE;
    handle_signals(now);
    if (stop_at) {
      if (stop_done(now)) break;
      wake = stop_at;
    }
    workers_tend(now, &wake);
    conns_expire(now, &wake);
    dispatch();
    if (qhead >= 0 && spawn_hold > now) wake = earliest(wake, spawn_hold);
    int n = pollset_build(now, &wake);
    if (events_wait(n, now, wake) == 0) continue;
    events_handle(n);
    dispatch();
  }

  shutdown_reap();
  free(pfd);
  free(pwho);
  say("stopped");
  return 0;
}
