/* A qmail-idcheckd worker (idcheckd_worker.h): one interpreter, the policy
 * imported before it takes work, one call per connection it is given. */
#include "idcheckd_worker.h"
#include "python_embed.h"
#include "python_log.h"
#include "policy_wire.h"
#include "deadline.h"
#include "stralloc.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* ---- the master's half ---- */

int worker_give_fd(int ctl, int fd, pid_t session)
{
  struct handoff h = { session };
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov;
  struct msghdr msg;
  fd_msg_init(&msg, &iov, &h, sizeof h, cbuf);
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  ssize_t n;
  while ((n = sendmsg(ctl, &msg, MSG_DONTWAIT | MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
  return n == (ssize_t)sizeof h;
}

int worker_news(int ctl, char *news)
{
  char buf[8];
  ssize_t n = recv(ctl, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (n <= 0) return -1;
  *news = buf[0];
  return 1;
}

/* ---- the worker ---- */

/* Send one status byte to the master. Waits at most IO_LIMIT_MS for room;
 * news that cannot be sent is dropped (a master gone or stuck: its call
 * limit or EOF on the channel ends this worker). */
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

/* The channel on fd 3 and nothing else of the master's; fd 0 /dev/null,
 * fd 1 the log (print() goes there, as in qmail-idcheck-python); the
 * signals as a fresh process has them; gone with the master. */
static int worker_setup(int ctl)
{
  if (ctl != 3) {
    if (dup2(ctl, 3) < 0) _exit(111);
    ctl = 3;
  }
  closefrom(4);   /* every descriptor, however many the master has open */
  fcntl(ctl, F_SETFD, FD_CLOEXEC);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0 && null != 0) { dup2(null, 0); close(null); }
  dup2(2, 1);

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
  return ctl;
}

void worker_main(int ctl)
{
  ctl = worker_setup(ctl);
  py_start();                   /* failures are logged; calls then answer FAULT */
  py_preload();
  worker_tell(ctl, WORKER_READY);

  stralloc in = {0}, out = {0};
  for (;;) {
    struct handoff h;
    int fd = worker_take(ctl, &h);
    if (fd < 0) _exit(0);       /* retired, or the master stops */
    log_set_pid((long)h.session);
    int keep = worker_call(fd, &in, &out);
    close(fd);
    worker_tell(ctl, keep ? WORKER_KEEP : WORKER_DROP);
    /* a large request or reply does not stay resident */
    if (in.a > (1u << 20)) { free(in.s); in.s = 0; in.a = in.len = 0; }
    if (out.a > (1u << 20)) { free(out.s); out.s = 0; out.a = out.len = 0; }
  }
}
