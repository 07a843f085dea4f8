/* Start a program with two descriptors as its 0 and 1, vfork-style
 * (posix_spawn), SIGPIPE back at its default. */
#ifndef SPAWN_STDIO_H
#define SPAWN_STDIO_H
#include <sys/types.h>

/* 0 with *pid set, or an errno value (the exec's own failure included).
 * search: look path up on PATH as execvp does. */
int spawn_stdio(pid_t *pid, const char *path, char *const argv[], int fd0, int fd1, int search);
/* The same, with one more inherited descriptor closed in the child (-1: none). */
int spawn_stdio_closing(pid_t *pid, const char *path, char *const argv[], int fd0, int fd1,
                        int search, int close_fd);

#endif
