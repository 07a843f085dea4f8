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
 * or dying (PR_SET_PDEATHSIG) ends it.
 *
 *   qmail-idcheckd.c   options, signals, what a wake-up does, stopping
 *   idcheckd_events.c  the wait: one epoll set
 *   idcheckd_conns.c   the socket, the connections, their clients, the queue
 *   idcheckd_pool.c    the workers as the master sees them, who gets one
 *   idcheckd_worker.c  the worker process and its channel to the master */
#include "idcheckd_conns.h"
#include "idcheckd_events.h"
#include "idcheckd_pool.h"
#include "deadline.h"
#include "log.h"
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define USAGE "qmail-idcheckd [-n workers] [-x maxworkers] [-p perclient] [-k keep] " \
              "[-m maxrequests] [-t calllimit] [-c maxconns] [-i idle] /path/to/socket"
#define STOP_GRACE_MS 5000       /* SIGTERM: in-flight calls may finish this long */
#define MAXWORKERS_DEFAULT 16

const char *PROG = "qmail-idcheckd";

/* ---- options ---- */

static long number(const char *s, char opt, long lo, long hi)
{
  char *end;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || !*s || *end || errno || v < lo || v > hi) {
    char o[2] = { opt, 0 }, l[LOG_NUM], h[LOG_NUM];
    die(100, "fatal: -", o, " wants a number from ", log_num(l, lo), " to ", log_num(h, hi),
        (char *)0);
  }
  return v;
}

/* The settings, into the pool's and the connections' variables; the
 * socket's path. */
static const char *options(int argc, char **argv)
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
    default: dieusage(USAGE);
    }
  }
  if (optind != argc - 1) dieusage(USAGE);
  if (!maxworkers) {
    maxworkers = nworkers > MAXWORKERS_DEFAULT ? nworkers : MAXWORKERS_DEFAULT;
  } else if (maxworkers < nworkers) {
    char x[LOG_NUM], n[LOG_NUM];
    die(100, "fatal: -x ", log_num(x, maxworkers), " is less than -n ", log_num(n, nworkers),
        (char *)0);
  }
  return argv[optind];
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
    char lim[LOG_NUM], max[LOG_NUM];
    maxconns = (int)rl.rlim_cur - maxworkers - 32;
    if (maxconns < 1) maxconns = 1;
    warn("descriptor limit ", log_num(lim, (long long)rl.rlim_cur), ": at most ",
         log_num(max, maxconns), " connections", (char *)0);
  }
}

static void say_listening(const char *path)
{
  char n[LOG_NUM], x[LOG_NUM], p[LOG_NUM], m[LOG_NUM], t[LOG_NUM], c[LOG_NUM];
  warn("listening on ", path, ": ", log_num(n, nworkers), " workers (up to ", log_num(x, maxworkers),
       ", ", log_num(p, perclient), " per client), ", log_num(m, (long long)maxrequests),
       " requests each, call limit ", log_num(t, calllimit_ms / 1000), " s, at most ",
       log_num(c, maxconns), " connections", (char *)0);
}

/* ---- signals ---- */

static volatile sig_atomic_t got_term, got_hup, got_chld;
static void on_signal(int sig)
{
  if (sig == SIGTERM || sig == SIGINT) got_term = 1;
  else if (sig == SIGHUP) got_hup = 1;
  else if (sig == SIGCHLD) got_chld = 1;
}
static sigset_t waitmask;       /* the signals arrive only inside the wait */

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

/* SIGTERM: no new connections; those without a call in progress are closed. */
static void stop_begin(int64_t now)
{
  char grace[LOG_NUM];
  warn("stopping: no new connections, in-flight calls get ", log_num(grace, STOP_GRACE_MS / 1000),
       " s", (char *)0);
  pool_stop_at = now + STOP_GRACE_MS;
  unlisten();
  for (int i = nconns - 1; i >= 0; --i)
    if (conns[open_conns[i]].state != C_BUSY) conn_close(open_conns[i]);
}

static void handle_signals(int64_t now)
{
  if (got_chld) { got_chld = 0; pool_reap(); }
  if (got_hup) { got_hup = 0; pool_reload(); }
  if (got_term && !pool_stop_at) stop_begin(now);
}

/* ---- a wake-up ---- */

static void conn_event(int c, uint32_t ev)
{
  int gone = ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
  switch (conns[c].state) {
  case C_HELLO:
    if (gone) conn_close(c); else if (ev & EPOLLIN) hello_read(c);
    break;
  case C_IDLE:
    if (gone) conn_close(c);            /* the session ended */
    else if (ev & EPOLLIN) queue_push(c);
    break;
  case C_QUEUED:
    if (gone) conn_close(c);            /* gave up waiting */
    break;
  case C_BUSY:
    if (gone) {
      conns[c].hung_up = 1;
      worker_hung_up(&workers[conns[c].worker]);
    }
    break;
  case C_FREE:
    break;
  }
}

static void events_handle(int n)
{
  enum watch_kind kind;
  int i, fd;
  /* the workers' news first: a call done before its session hung up */
  for (int k = 0; k < n; ++k)
    if (event_at(k, &kind, &i, &fd) && kind == WATCH_WORKER && workers[i].ctl == fd)
      worker_status(&workers[i]);
  for (int k = 0; k < n; ++k) {
    uint32_t ev = event_at(k, &kind, &i, &fd);
    if (kind != WATCH_CONN || conns[i].state == C_FREE || conns[i].fd != fd) continue;  /* closed meanwhile */
    conn_event(i, ev);
  }
  for (int k = 0; k < n; ++k)
    if ((event_at(k, &kind, &i, &fd) & EPOLLIN) && kind == WATCH_LISTEN) accept_some();
}

/* Until SIGCHLD (or another signal) or the deadline. */
static void signal_wait(int64_t deadline)
{
  got_chld = 0;
  events_wait(now_ms(), deadline, &waitmask);
}

int main(int argc, char **argv)
{
  const char *path = options(argc, argv);
  fd_room();
  signals_setup();
  if (!events_init(1 + maxworkers + maxconns)) die_sys(111, "fatal: epoll", (char *)0);
  if (!conns_alloc()) die(111, "fatal: out of memory", (char *)0);

  listen_on(path);
  say_listening(path);
  if (!pool_start()) die(111, "fatal: out of memory", (char *)0);

  for (;;) {
    int64_t now = now_ms(), wake = DEADLINE_NONE;
    handle_signals(now);
    if (pool_stop_at) {
      if (pool_stopped(now)) break;
      wake = pool_stop_at;
    }
    workers_tend(now, &wake);
    conns_expire(now, &wake);
    wake = deadline_min(wake, dispatch());
    listen_watch(now, &wake);
    conns_watch();
    int n = events_wait(now, wake, &waitmask);
    if (!n) continue;
    events_handle(n);
    dispatch();
  }

  while (nconns) conn_close(open_conns[nconns - 1]);
  pool_end(signal_wait);
  warn("stopped", (char *)0);
  return 0;
}
