/* What qmail-idcheckd's master waits for: one epoll set, level-triggered,
 * kept between waits, so that a wake-up costs what is ready, not what is
 * open (poll(2) cost about 0.55 us of the master's CPU per open connection
 * per call). Each descriptor is watched under a tag (its kind, its index,
 * the descriptor itself, to tell a closed one from its successor).
 *
 * A descriptor leaves the set before it is closed (events_watch with 0):
 * epoll keeps a descriptor whose file is still open elsewhere, and the
 * master's children hold copies of its descriptors for a moment after
 * fork, a worker a session's connection for a whole call. */
#ifndef IDCHECKD_EVENTS_H
#define IDCHECKD_EVENTS_H
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>

enum watch_kind { WATCH_LISTEN = 1, WATCH_WORKER, WATCH_CONN };

/* The set, with room for max ready events per wait: 1 ok, 0 failed. */
int events_init(int max);

/* fd watched for want (EPOLLIN, EPOLLRDHUP; 0: not at all) under kind and
 * index; *watching holds what is set now (0 at first) and only a change
 * costs a system call. 1 ok, 0 failed (errno; fd is then not watched). */
int events_watch(int fd, uint32_t *watching, uint32_t want, enum watch_kind kind, int index);

/* Waits until something is ready, a signal outside mask's blocked set
 * arrives, or wake (DEADLINE_NONE: no limit): how many are ready (0 for
 * none), each read with event_at. */
int events_wait(int64_t now, int64_t wake, const sigset_t *mask);
/* The k-th ready one: its kind, index and descriptor; the events. */
uint32_t event_at(int k, enum watch_kind *kind, int *index, int *fd);

#endif
