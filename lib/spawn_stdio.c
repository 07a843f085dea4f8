#include "spawn_stdio.h"
#include <signal.h>
#include <spawn.h>

extern char **environ;

int spawn_stdio(pid_t *pid, const char *path, char *const argv[], int fd0, int fd1, int search)
{
  return spawn_stdio_closing(pid, path, argv, fd0, fd1, search, -1);
}

int spawn_stdio_closing(pid_t *pid, const char *path, char *const argv[], int fd0, int fd1,
                        int search, int close_fd)
{
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  sigset_t defaults;
  int r = posix_spawn_file_actions_init(&actions);
  if (r) return r;
  r = posix_spawnattr_init(&attr);
  if (r) { posix_spawn_file_actions_destroy(&actions); return r; }
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  if (!(r = posix_spawn_file_actions_adddup2(&actions, fd0, 0))
      && !(r = posix_spawn_file_actions_adddup2(&actions, fd1, 1))
      && (close_fd < 0 || !(r = posix_spawn_file_actions_addclose(&actions, close_fd)))
      && !(r = posix_spawnattr_setsigdefault(&attr, &defaults))
      && !(r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF)))
    r = search ? posix_spawnp(pid, path, &actions, &attr, argv, environ)
               : posix_spawn(pid, path, &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return r;
}
