#include "wait_deadline.h"
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile pid_t waiting_for;
static volatile sig_atomic_t killed;

static void expire(int sig)
{
  (void)sig;
  if (waiting_for > 0) kill(waiting_for, SIGKILL);
  killed = 1;
}

int wait_deadline(pid_t pid, unsigned seconds, int *expired)
{
  struct sigaction sa, old;
  int status;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = expire;   /* no SA_RESTART: waitpid returns EINTR */
  sigaction(SIGALRM, &sa, &old);
  waiting_for = pid;
  killed = 0;
  /* an alarm already set (a program's lifetime) is put back afterwards */
  unsigned before = alarm(seconds ? seconds : 1);
  if (before && before < seconds) alarm(before);
  time_t started = time(0);
  pid_t r;
  while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
  alarm(0);
  waiting_for = 0;
  sigaction(SIGALRM, &old, 0);
  if (before) {
    time_t spent = time(0) - started;
    alarm(spent >= (time_t)before ? 1 : before - (unsigned)spent);
  }
  if (expired) *expired = killed;
  return r == pid ? status : -1;
}
