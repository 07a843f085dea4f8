/* relay-floor: the least a program between tcpserver and qmail-smtpd can
 * cost, for bench/sessions' floor row. It spawns prog on two pipes and
 * copies bytes both ways, nothing else: no line reading, no buffer of its
 * own (splice moves pages between the socket and the pipes), one process.
 *
 *   tcpserver ... relay-floor prog [ arg ... ]
 *
 * fds 0 and 1 are the client's socket. Client to prog: splice from the
 * socket into prog's stdin pipe; prog to client: splice from prog's stdout
 * pipe into the socket. The client's end of input closes prog's stdin; prog's
 * end of output shuts the socket down for writing. It exits with prog's exit
 * status once prog has exited and its output is delivered.
 *
 * Not a program of the project: it exists so the proxy's cost can be put
 * beside the cost of any relay at all. Every wait is bounded (idle 20 min:
 * qmail-smtpd's own timeout ends a silent session long before). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define IDLE_MS (20 * 60 * 1000)
#define CHUNK (1 << 20)         /* as much as a pipe holds */

struct way { int from, to; int want_out; int done; };

static void die(const char *what)
{
  fprintf(stderr, "relay-floor: fatal: %s\n", what);
  _exit(111);
}

/* One move from w->from to w->to; nothing is ever copied through user space. */
static void step(struct way *w, short revents)
{
  if (w->want_out && !(revents & (POLLOUT | POLLERR | POLLHUP))) return;
  ssize_t n = splice(w->from, 0, w->to, 0, CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n > 0) { w->want_out = 0; return; }
  if (n == 0) { w->done = 1; return; }
  if (errno == EAGAIN) {
    /* the source was ready and nothing moved: the destination is full;
     * after a wait for room, nothing moved: the source is empty again */
    w->want_out = !w->want_out;
    return;
  }
  if (errno == EINTR) return;
  w->done = 1;                 /* EPIPE, ECONNRESET: that way is over */
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: relay-floor prog [ arg ... ]\n");
    return 100;
  }
  signal(SIGPIPE, SIG_IGN);
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) die("pipe");

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  pid_t pid;
  if (posix_spawn(&pid, argv[1], &fa, 0, argv + 1, environ) != 0) die("cannot run prog");
  close(in[0]);
  close(out[1]);

  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);   /* fd 1 is the same socket */
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  fcntl(out[0], F_SETFL, O_NONBLOCK);

  struct way up = { 0, in[1], 0, 0 }, down = { out[0], 1, 0, 0 };
  while (!down.done) {
    struct pollfd p[2];
    int n = 0, iu = -1, id;
    if (!up.done) {
      p[n] = (struct pollfd){ up.want_out ? up.to : up.from, up.want_out ? POLLOUT : POLLIN, 0 };
      iu = n++;
    }
    p[n] = (struct pollfd){ down.want_out ? down.to : down.from, down.want_out ? POLLOUT : POLLIN, 0 };
    id = n++;
    int r = poll(p, (nfds_t)n, IDLE_MS);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (iu >= 0 && p[iu].revents) {
      step(&up, p[iu].revents);
      if (up.done) close(in[1]);      /* prog reads its end of input */
    }
    if (p[id].revents) step(&down, p[id].revents);
  }
  shutdown(1, SHUT_WR);
  close(out[0]);
  if (!up.done) close(in[1]);

  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return 111;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 111;
}
