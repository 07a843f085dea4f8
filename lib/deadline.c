#include "deadline.h"
#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

deadline_t deadline_in(int64_t ms)
{
  int64_t now = now_ms();
  if (ms < 0) ms = 0;
  if (ms > DEADLINE_NONE - now) return DEADLINE_NONE;
  return now + ms;
}

int fd_wait(int fd, short events, deadline_t deadline)
{
  struct pollfd p;
  p.fd = fd;
  p.events = events;
  for (;;) {
    int timeout = -1;
    if (deadline != DEADLINE_NONE) {
      int64_t left = deadline - now_ms();
      if (left < 0) left = 0;
      timeout = left > 86400000 ? 86400000 : (int)left;
    }
    p.revents = 0;
    int r = poll(&p, 1, timeout);
    if (r > 0) return 1;  /* POLLHUP/POLLERR: the read or write tells */
    if (r == 0) {
      if (deadline != DEADLINE_NONE && now_ms() >= deadline) return 0;
      continue;
    }
    if (errno != EINTR) return -1;
  }
}

ssize_t read_deadline(int fd, char *buf, size_t len, deadline_t deadline)
{
  for (;;) {
    int r = fd_wait(fd, POLLIN, deadline);
    if (r == 0) { errno = ETIMEDOUT; return -1; }
    if (r < 0) return -1;
    ssize_t n = read(fd, buf, len);
    if (n >= 0) return n;
    if (errno != EINTR && errno != EAGAIN) return -1;
  }
}

int write_all_deadline(int fd, const char *buf, size_t len, deadline_t deadline)
{
  while (len) {
    int r = fd_wait(fd, POLLOUT, deadline);
    if (r == 0) { errno = ETIMEDOUT; return -1; }
    if (r < 0) return -1;
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}
