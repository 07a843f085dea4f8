/* qmail-idcheckd's wait (idcheckd_events.h). */
#include "idcheckd_events.h"
#include "deadline.h"
#include "log.h"
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

static int epfd = -1;
static struct epoll_event *ready;
static int maxready;

int events_init(int max)
{
  epfd = epoll_create1(EPOLL_CLOEXEC);
  ready = calloc((size_t)max, sizeof *ready);
  maxready = max;
  return epfd >= 0 && ready;
}

int events_watch(int fd, uint32_t *watching, uint32_t want, enum watch_kind kind, int index)
{
  if (want == *watching) return 1;
  struct epoll_event ev = { .events = want };
  ev.data.u64 = (uint64_t)kind << 56 | (uint64_t)(uint32_t)index << 32 | (uint32_t)fd;
  int op = !want ? EPOLL_CTL_DEL : *watching ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  int r = epoll_ctl(epfd, op, fd, &ev);
  if (r < 0 && op == EPOLL_CTL_MOD) epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev);
  *watching = r < 0 ? 0 : want;
  return r == 0 || !want;
}

int events_wait(int64_t now, int64_t wake, const sigset_t *mask)
{
  int timeout = -1;
  if (wake != DEADLINE_NONE) {
    int64_t left = wake > now ? wake - now : 0;
    timeout = left > INT_MAX ? INT_MAX : (int)left;
  }
  int n = epoll_pwait(epfd, ready, maxready, timeout, mask);
  if (n < 0 && errno != EINTR) die_sys(111, "fatal: epoll_pwait", (char *)0);
  return n < 0 ? 0 : n;
}

uint32_t event_at(int k, enum watch_kind *kind, int *index, int *fd)
{
  uint64_t tag = ready[k].data.u64;
  *kind = (enum watch_kind)(tag >> 56);
  *index = (int)(tag >> 32 & 0xffffff);
  *fd = (int)(uint32_t)tag;
  return ready[k].events;
}
