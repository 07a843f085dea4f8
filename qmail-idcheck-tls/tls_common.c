#include "tls_common.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "deadline.h"
#include "fmt.h"
#include "sanitize.h"
#include "stralloc.h"

void tls_log(const char *what, const char *detail)
{
  stralloc line = {0};
  char num[FMT_ULONG];
  if (stralloc_cats(&line, TLS_PROG ": pid ")
      && stralloc_catb(&line, num, fmt_ulong(num, (unsigned long)getpid()))
      && stralloc_cats(&line, " ") && sanitize_cats(&line, what, 300)
      && (!detail || (stralloc_cats(&line, ": ") && sanitize_cats(&line, detail, 300)))
      && stralloc_cats(&line, "\n"))
    write_all_deadline(2, line.s, line.len, deadline_in(10000));
  stralloc_free(&line);
}

void tls_die(int code, const char *what, const char *detail)
{
  tls_log(what, detail);
  _exit(code);
}

int tls_wait_prog(pid_t pid)
{
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return 111 << 8;
  return status;
}

void tls_exit_like(int status)
{
  if (WIFSIGNALED(status)) {
    struct rlimit none = {0, 0};
    sigset_t all;
    setrlimit(RLIMIT_CORE, &none);
    signal(WTERMSIG(status), SIG_DFL);
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, 0);
    raise(WTERMSIG(status));
  }
  exit(WIFEXITED(status) ? WEXITSTATUS(status) : 111);
}
