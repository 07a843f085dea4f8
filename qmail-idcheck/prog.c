#include "prog.h"
#include "client.h"
#include "deadline.h"
#include "log.h"
#include "session_end.h"
#include "spawn_stdio.h"
#include "stream.h"
#include "wait_deadline.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static char space[8192];
static struct stream out;        /* prog's stdout */
static int in = -1;              /* prog's stdin */
static pid_t pid = -1;
static int64_t timeout;
static stralloc reply, line;
static int last_code;

void prog_start(char **argv, int64_t timeout_ms)
{
  int to[2], from[2];
  timeout = timeout_ms;
  if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
    session_end("421 4.3.0 cannot start the mail server\r\n", 111);
  int r = spawn_stdio(&pid, argv[0], argv, to[0], from[1], 1);
  if (r != 0) {
    errno = r;
    warn_sys("cannot run ", argv[0], (char *)0);
    pid = -1;
    session_end("421 4.3.0 cannot start the mail server\r\n", 111);
  }
  close(to[0]);
  close(from[1]);
  in = to[1];
  fcntl(in, F_SETFL, O_NONBLOCK);
  fcntl(from[0], F_SETFL, O_NONBLOCK);
  stream_init(&out, from[0], space, sizeof space);
}

void prog_die(void)
{
  if (pid > 0) kill(pid, SIGTERM);
  session_end("421 4.3.0 mail server unavailable, closing connection\r\n", 111);
}

void prog_send(const char *s, size_t len)
{
  if (write_all_deadline(in, s, len, deadline_in(timeout)) < 0) prog_die();
  client_progress();
}

int prog_reply(void)
{
  if (reply_read(&out, &reply, &last_code, deadline_in(timeout)) <= 0) prog_die();
  return last_code;
}

int prog_command(const stralloc *l)
{
  if (!stralloc_copy(&line, l) || !stralloc_catb(&line, "\r\n", 2)) die_nomem();
  prog_send(line.s, line.len);
  return prog_reply();
}

stralloc *prog_reply_text(void)
{
  return &reply;
}

int prog_last_code(void)
{
  return last_code;
}

int prog_reply_serving(int fd, int (*serve)(void))
{
  deadline_t deadline = deadline_in(timeout);
  while (stream_find_lf(&out) < 0) {
    struct pollfd p[2] = { { out.fd, POLLIN, 0 }, { fd, POLLIN, 0 } };
    int64_t left = deadline - now_ms();
    if (left <= 0) prog_die();
    int r = poll(p, fd >= 0 ? 2 : 1, left > 86400000 ? 86400000 : (int)left);
    if (r < 0 && errno != EINTR) prog_die();
    if (r <= 0) continue;
    if (fd >= 0 && p[1].revents) fd = serve();
    if (p[0].revents) break;
  }
  return prog_reply();
}

int prog_finish(int64_t within_ms)
{
  if (in >= 0) close(in);
  in = -1;
  if (pid <= 0) return 0;
  int status = wait_deadline(pid, deadline_in(within_ms), 0);
  pid = -1;
  if (status >= 0 && WIFEXITED(status)) return WEXITSTATUS(status);
  return 111;
}
