/* I/O that never waits past a deadline: milliseconds on CLOCK_MONOTONIC. */
#ifndef DEADLINE_H
#define DEADLINE_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef int64_t deadline_t;        /* absolute, in ms; DEADLINE_NONE waits forever */
#define DEADLINE_NONE INT64_MAX

int64_t now_ms(void);
deadline_t deadline_in(int64_t ms);  /* now + ms, saturating */
static inline deadline_t deadline_min(deadline_t a, deadline_t b) { return a < b ? a : b; }

/* poll one fd for events until the deadline: 1 ready, 0 timed out, -1 error */
int fd_wait(int fd, short events, deadline_t deadline);

/* One read: >0 bytes, 0 EOF, -1 error (errno ETIMEDOUT past the deadline). */
ssize_t read_deadline(int fd, char *buf, size_t len, deadline_t deadline);

/* All bytes or -1 (errno ETIMEDOUT past the deadline, EPIPE, ...). */
int write_all_deadline(int fd, const char *buf, size_t len, deadline_t deadline);

#endif
