/* qmail-idcheckd's connections (idcheckd_conns.h). */
#include "idcheckd_conns.h"
#include "idcheckd_events.h"
#include "idcheckd_worker.h"
#include "deadline.h"
#include "log.h"
#include "policy_wire.h"
#include "byte.h"
#include "ip4.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int maxconns = 1000;
int64_t idle_ms = 1800 * 1000;
struct conn *conns;
int *open_conns;
int nconns;
int qhead = -1;

static int qtail = -1;
static int *free_conns;         /* a stack of the free slots */
static int nfree;
static int listenfd = -1;
static const char *sockpath;
static dev_t sock_dev;
static ino_t sock_ino;
static uint32_t listen_watching;
static int64_t accept_resume;   /* out of descriptors: listenfd rests until then */

int conns_alloc(void)
{
  conns = calloc((size_t)maxconns, sizeof *conns);
  open_conns = calloc((size_t)maxconns, sizeof *open_conns);
  free_conns = calloc((size_t)maxconns, sizeof *free_conns);
  if (!conns || !open_conns || !free_conns) return 0;
  for (int c = maxconns - 1; c >= 0; --c) {
    conns[c].fd = -1;
    free_conns[nfree++] = c;
  }
  return 1;
}

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

int client_same(const struct client *a, const struct client *b)
{
  return a->known && b->known && byte_equal(a->key, 16, b->key);
}

const char *client_text(const struct client *cl, char *buf)
{
  if (!cl->known) return "(unknown)";
  size_t n = ip6_isv4mapped(cl->key) ? fmt_ip4(buf, cl->key + 12) : fmt_ip6(buf, cl->key);
  if (!ip6_isv4mapped(cl->key)) { memcpy(buf + n, "/64", 3); n += 3; }
  buf[n] = 0;
  return buf;
}

/* ---- connections ---- */

void queue_unlink(int c)
{
  struct conn *k = &conns[c];
  if (k->qprev >= 0) conns[k->qprev].qnext = k->qnext; else qhead = k->qnext;
  if (k->qnext >= 0) conns[k->qnext].qprev = k->qprev; else qtail = k->qprev;
  k->qprev = k->qnext = -1;
}

void queue_push(int c)
{
  struct conn *k = &conns[c];
  k->qprev = qtail;
  k->qnext = -1;
  if (qtail >= 0) conns[qtail].qnext = c; else qhead = c;
  qtail = c;
  k->state = C_QUEUED;
}

void conn_close(int c)
{
  struct conn *k = &conns[c];
  if (k->state == C_FREE) return;
  if (k->state == C_QUEUED) queue_unlink(c);
  events_watch(k->fd, &k->watching, 0, WATCH_CONN, c);
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
  k->hung_up = 0;
  k->watching = 0;
  k->held = 0;
  k->open_pos = nconns;
  open_conns[nconns++] = c;
}

static void say_session(const struct conn *k, const char *what)
{
  char pid[LOG_NUM];
  warn("session pid ", log_num(pid, k->peer), what, (char *)0);
}

void accept_some(void)
{
  for (int i = 0; i < 64 && nconns < maxconns; ++i) {
    int fd = accept4(listenfd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        warn("cannot accept: ", strerror(errno), " (trying again in 1 s)", (char *)0);
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
void hello_read(int c)
{
  struct conn *k = &conns[c];
  char buf[WIRE_MAX_HELLO + 1];
  struct wire_opt client;
  ssize_t n = recv(k->fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) { conn_close(c); return; }
  long flen = wire_hello_decode(buf, (size_t)n, &client);
  if (flen <= 0 || recv(k->fd, buf, (size_t)flen, MSG_DONTWAIT) != flen) {
    say_session(k, " sent no valid hello: connection closed");
    conn_close(c);
    return;
  }
  client_parse(&k->client, client.present ? client.s : 0, client.len);
  k->state = C_IDLE;
  k->last = now_ms();
  if (n > flen) queue_push(c);          /* its request came with it */
}

void conns_expire(int64_t now, int64_t *wake)
{
  for (int i = 0; i < nconns; ++i) {
    int c = open_conns[i];
    int64_t limit;
    if (conns[c].state == C_HELLO) limit = conns[c].last + IO_LIMIT_MS;
    else if (conns[c].state == C_IDLE) limit = conns[c].last + idle_ms;
    else continue;
    if (now >= limit) {
      if (conns[c].state == C_HELLO) say_session(&conns[c], " sent no hello: connection closed");
      conn_close(c);
      --i;                      /* the last one took its place */
    } else {
      *wake = deadline_min(*wake, limit);
    }
  }
}

void conns_watch(void)
{
  for (int i = nconns - 1; i >= 0; --i) {   /* a closed one's place goes to a seen one */
    int c = open_conns[i];
    struct conn *k = &conns[c];
    uint32_t want = EPOLLRDHUP;
    if (k->state == C_IDLE || k->state == C_HELLO) want |= EPOLLIN;
    if (k->state == C_BUSY && k->hung_up) want = 0;
    if (!events_watch(k->fd, &k->watching, want, WATCH_CONN, c)) {
      warn_sys("cannot watch a connection: closed", (char *)0);
      conn_close(c);
    }
  }
}

/* ---- the socket ---- */

void listen_on(const char *path)
{
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sun.sun_path) { errno = ENAMETOOLONG; die_sys(111, "fatal: ", path, (char *)0); }
  strcpy(sun.sun_path, path);
  sockpath = path;

  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) { errno = EEXIST; die_sys(111, "fatal: not a socket, left alone", (char *)0); }
    /* non-blocking: a server with a full backlog answers EAGAIN, at once */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0) die_sys(111, "fatal: socket", (char *)0);
    if (connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0 || errno == EAGAIN)
      die(111, "fatal: another server answers on ", path, (char *)0);
    if (errno != ECONNREFUSED && errno != ENOENT) die_sys(111, "fatal: cannot probe the socket", (char *)0);
    close(probe);
    if (unlink(path) < 0 && errno != ENOENT) die_sys(111, "fatal: cannot remove the stale socket", (char *)0);
    warn("removed a stale socket ", path, (char *)0);
  }
  listenfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listenfd < 0) die_sys(111, "fatal: socket", (char *)0);
  mode_t old = umask(077);      /* srw-------: only our own user connects */
  int r = bind(listenfd, (struct sockaddr *)&sun, sizeof sun);
  umask(old);
  if (r < 0) die_sys(111, "fatal: cannot bind the socket", (char *)0);
  if (chmod(path, 0600) < 0) die_sys(111, "fatal: cannot chmod the socket", (char *)0);
  if (listen(listenfd, SOMAXCONN) < 0) die_sys(111, "fatal: listen", (char *)0);
  if (stat(path, &st) == 0) { sock_dev = st.st_dev; sock_ino = st.st_ino; }
}

void unlisten(void)
{
  if (listenfd < 0) return;
  struct stat st;
  /* only our own socket: a newer server may have replaced it already */
  if (stat(sockpath, &st) == 0 && st.st_dev == sock_dev && st.st_ino == sock_ino)
    unlink(sockpath);
  events_watch(listenfd, &listen_watching, 0, WATCH_LISTEN, 0);
  close(listenfd);
  listenfd = -1;
}

void listen_watch(int64_t now, int64_t *wake)
{
  int taking = listenfd >= 0 && nconns < maxconns && now >= accept_resume;
  if (listenfd >= 0 && nconns < maxconns && !taking) *wake = deadline_min(*wake, accept_resume);
  if (listenfd >= 0 && !events_watch(listenfd, &listen_watching, taking ? EPOLLIN : 0, WATCH_LISTEN, 0))
    die_sys(111, "fatal: cannot watch the socket", (char *)0);
}
