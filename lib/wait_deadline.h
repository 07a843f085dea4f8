/* waitpid with a deadline: past it the child is killed (SIGKILL) and reaped.
 * A blocking waitpid under alarm(), no polling. */
#ifndef WAIT_DEADLINE_H
#define WAIT_DEADLINE_H
#include <sys/types.h>

/* The child's wait status; *expired set when the deadline killed it.
 * -1 when pid cannot be waited for. */
int wait_deadline(pid_t pid, unsigned seconds, int *expired);

#endif
