/* qmail-idcheckd's pool (idcheckd_pool.h). */
#include "idcheckd_pool.h"
#include "idcheckd_conns.h"
#include "idcheckd_events.h"
#include "idcheckd_worker.h"
#include "deadline.h"
#include "log.h"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define HANGUP_GRACE_MS 200      /* a busy worker whose client hung up: let it finish */
#define REAP_GRACE_MS 2000       /* stopped: the workers' ends are waited for this long */
#define YOUNG_MS 1000            /* a worker dying younger than this is respawned later */

int nworkers = 2;
int maxworkers;
int perclient = 2;
int64_t keep_ms = 60 * 1000;
unsigned long maxrequests = 10000;
int64_t calllimit_ms = 120 * 1000;
struct worker *workers;
int64_t pool_stop_at;

static int *wanting;            /* dispatch's scratch: calls that wait for a worker */
static int64_t spawn_hold;      /* a worker died young: the pool grows no sooner */
static int pool_full_said;      /* "pool at its limit" logged, until there is room again */

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

static int widx(const struct worker *w) { return (int)(w - workers) + 1; }
static int extra_slot(const struct worker *w) { return w - workers >= nworkers; }

/* "worker N pid P " and the rest of the line. */
static void say_worker(int slot, pid_t pid, const char *what, const char *more, const char *tail)
{
  char n[LOG_NUM], p[LOG_NUM];
  warn("worker ", log_num(n, slot), " pid ", log_num(p, pid), " ", what, more, tail, (char *)0);
}

/* ---- one worker ---- */

static void worker_lost(struct worker *w);

static void worker_spawn(struct worker *w, const char *why)
{
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    warn_sys("cannot create a worker channel", (char *)0);
    w->state = W_EMPTY;
    w->respawn_at = spawn_hold = now_ms() + YOUNG_MS;
    return;
  }
  pid_t pid = fork();
  if (pid < 0) {
    warn_sys("cannot fork a worker", (char *)0);
    close(sv[0]);
    close(sv[1]);
    w->state = W_EMPTY;
    w->respawn_at = spawn_hold = now_ms() + YOUNG_MS;
    return;
  }
  if (pid == 0) {
    close(sv[0]);
    worker_main(sv[1]);
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
  w->watching = 0;
  say_worker(widx(w), pid, "started", why, "");
  if (!events_watch(w->ctl, &w->watching, EPOLLIN, WATCH_WORKER, widx(w) - 1)) {
    warn_sys("cannot watch a worker channel", (char *)0);
    kill(pid, SIGKILL);
    worker_lost(w);
  }
}

/* Close the worker's channel: an idle worker exits at once; the slot is free
 * for a replacement, the old process is reaped whenever it ends. */
static void worker_let_go(struct worker *w)
{
  if (w->ctl >= 0) {
    events_watch(w->ctl, &w->watching, 0, WATCH_WORKER, widx(w) - 1);
    close(w->ctl);
  }
  w->ctl = -1;
  w->state = W_EMPTY;
  w->respawn_at = 0;
}

static void worker_retire(struct worker *w, const char *why)
{
  say_worker(widx(w), w->pid, "retired ", why, "");
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
  say_worker(widx(w), w->pid, "killed: ", why, "");
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
    char peer[LOG_NUM];
    say_worker(widx(w), w->pid, "died mid-call (session pid ", log_num(peer, k->peer), ")");
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

void worker_status(struct worker *w)
{
  char news;
  int r = worker_news(w->ctl, &news);
  if (r == 0) return;
  if (r < 0) { worker_lost(w); return; }
  if (news == WORKER_READY && w->state == W_STARTING) {
    char ms[LOG_NUM];
    say_worker(widx(w), w->pid, "ready in ", log_num(ms, now_ms() - w->started), " ms");
    worker_idle(w);
    return;
  }
  if ((news == WORKER_KEEP || news == WORKER_DROP) && w->state == W_BUSY) {
    struct conn *k = worker_release(w);
    ++w->served;
    if (k && k->state == C_BUSY) {
      if (news == WORKER_KEEP) {
        k->state = C_IDLE;
        k->last = now_ms();
      } else {
        conn_close((int)(k - conns));
      }
    }
    worker_idle(w);
    return;
  }
  say_worker(widx(w), w->pid, "said something unexpected", "", "");
  kill(w->pid, SIGKILL);
  worker_lost(w);
}

static int worker_give(struct worker *w, int c)
{
  if (!worker_give_fd(w->ctl, conns[c].fd, conns[c].peer)) {
    kill(w->pid, SIGKILL);
    worker_lost(w);
    return 0;
  }
  w->state = W_BUSY;
  w->conn = c;
  w->since = now_ms();
  conns[c].state = C_BUSY;
  conns[c].hung_up = 0;
  conns[c].worker = (int)(w - workers);
  return 1;
}

/* The session gave up mid-call (IDCHECK_CALLTIMEOUT): the answer is unwanted. */
void worker_hung_up(struct worker *w)
{
  if (w->kill_at) return;
  w->kill_at = now_ms() + HANGUP_GRACE_MS;
  w->kill_why = "its session hung up mid-call";
}

void workers_tend(int64_t now, int64_t *wake)
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
    if (w->state == W_EMPTY && !extra_slot(w) && !pool_stop_at) {
      if (now >= w->respawn_at) worker_spawn(w, "");
      else *wake = deadline_min(*wake, w->respawn_at);
    }
    if (w->state == W_BUSY) {
      *wake = deadline_min(*wake, w->since + calllimit_ms);
      if (w->kill_at) *wake = deadline_min(*wake, w->kill_at);
    }
    if (w->state == W_STARTING) *wake = deadline_min(*wake, w->started + calllimit_ms);
    if (w->state == W_IDLE && extra_slot(w)) *wake = deadline_min(*wake, w->since + keep_ms);
  }
}

/* ---- who gets a worker, and when the pool grows ---- */

static struct worker *worker_idle_first(void)
{
  for (int i = 0; i < maxworkers; ++i)        /* the -n workers first: extras go idle */
    if (workers[i].state == W_IDLE) return &workers[i];
  return 0;
}

/* Workers busy with the client's calls. */
static int client_holds(const struct client *cl)
{
  int n = 0;
  for (int i = 0; i < maxworkers; ++i)
    if (workers[i].state == W_BUSY && client_same(&conns[workers[i].conn].client, cl)) ++n;
  return n;
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
  char text[CLIENT_TEXT], limit[LOG_NUM], peer[LOG_NUM];
  if (conns[c].held) return;
  conns[c].held = 1;
  warn("client ", client_text(&conns[c].client, text), " at its limit of ",
       log_num(limit, perclient), " (-p): session pid ", log_num(peer, conns[c].peer), " waits",
       (char *)0);
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
    char max[LOG_NUM];
    warn("pool at its limit of ", log_num(max, maxworkers), " workers (-x): calls wait", (char *)0);
    pool_full_said = 1;
  }
}

/* In order of arrival, passing over calls whose client holds its -p
 * workers already. */
int64_t dispatch(void)
{
  if (pool_stop_at) return DEADLINE_NONE;
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
  return qhead >= 0 && spawn_hold > now_ms() ? spawn_hold : DEADLINE_NONE;
}

/* ---- the pool's life ---- */

int pool_start(void)
{
  workers = calloc((size_t)maxworkers, sizeof *workers);
  wanting = calloc((size_t)maxworkers, sizeof *wanting);
  if (!workers || !wanting) return 0;
  for (int i = 0; i < maxworkers; ++i) workers[i].ctl = -1;
  for (int i = 0; i < nworkers; ++i) worker_spawn(&workers[i], "");
  return 1;
}

void pool_reap(void)
{
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    int slot = kid_del(pid);
    char how[LOG_NUM];
    int sig = WIFSIGNALED(status);
    log_num(how, sig ? WTERMSIG(status) : WEXITSTATUS(status));
    struct worker *w = 0;
    for (int i = 0; i < maxworkers; ++i)
      if (workers[i].state != W_EMPTY && workers[i].pid == pid) w = &workers[i];
    say_worker(w ? widx(w) : slot, pid, sig ? "ended (signal " : "ended (exit ", how, ")");
    if (w) worker_lost(w);
  }
}

void pool_reload(void)
{
  warn("reload: replacing every worker as it becomes idle", (char *)0);
  for (int i = 0; i < maxworkers; ++i) {
    struct worker *w = &workers[i];
    if (w->state == W_IDLE) worker_retire(w, "(reload)");
    else if (w->state != W_EMPTY) w->retire = 1;
  }
}

int pool_stopped(int64_t now)
{
  int busy = 0;
  for (int i = 0; i < maxworkers; ++i) {
    struct worker *w = &workers[i];
    if (w->state == W_BUSY && now < pool_stop_at) busy = 1;
    else if (w->state == W_BUSY) worker_kill(w, "still busy at stop");
    else if (w->state != W_EMPTY) worker_let_go(w);
  }
  return !busy;
}

/* Every worker's channel is closed (an idle worker exits at its EOF). Waits
 * for their ends until REAP_GRACE_MS, then SIGKILLs the rest and waits one
 * more second; a process that even SIGKILL does not end (stuck in the
 * kernel) is left to init rather than keep the master forever. */
void pool_end(void (*wait_until)(int64_t deadline))
{
  for (int i = 0; i < maxworkers; ++i)
    if (workers[i].state != W_EMPTY) worker_let_go(&workers[i]);
  int64_t kill_at = now_ms() + REAP_GRACE_MS, give_up = kill_at + 1000;
  int killed = 0;
  for (;;) {
    pool_reap();
    if (!nkids) break;
    int64_t now = now_ms();
    if (now >= kill_at && !killed) {
      for (int i = 0; i < nkids; ++i) kill(kids[i].pid, SIGKILL);
      killed = 1;
    }
    if (now >= give_up) {
      for (int i = 0; i < nkids; ++i)
        say_worker(kids[i].slot, kids[i].pid, "did not end: left behind", "", "");
      break;
    }
    wait_until(killed ? give_up : kill_at);
  }
  free(workers);
  free(wanting);
  free(kids);
}
