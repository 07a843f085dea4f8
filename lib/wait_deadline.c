#include "wait_deadline.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int wait_deadline(pid_t pid, deadline_t deadline, int *expired)
{
  int killed = 0, status;
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0 || fd_wait(fd, POLLIN, deadline) <= 0) {
    /* late, or no way to wait with a deadline: never unbounded */
    killed = kill(pid, SIGKILL) == 0;
  }
  if (fd >= 0) close(fd);
  pid_t r;
  while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
  if (expired) *expired = killed;
  return r == pid ? status : -1;
}
