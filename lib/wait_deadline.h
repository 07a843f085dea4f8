/* waitpid with a deadline: past it the child is killed (SIGKILL) and reaped.
 * The wait is a poll on a pidfd: no signals, no polling loop, and an alarm
 * the program keeps for its own lifetime is left alone. */
#ifndef WAIT_DEADLINE_H
#define WAIT_DEADLINE_H
#include <sys/types.h>
#include "deadline.h"

/* The child's wait status; *expired (if given) set when the deadline killed
 * it. -1 when pid cannot be waited for. Without a pidfd (no descriptor
 * left), the child is killed at once rather than waited for unbounded. */
int wait_deadline(pid_t pid, deadline_t deadline, int *expired);

#endif
