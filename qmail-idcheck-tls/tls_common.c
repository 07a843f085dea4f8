#include "tls_common.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "fmt.h"
#include "log.h"
#include "sanitize.h"
#include "stralloc.h"

const char *PROG = TLS_PROG;

void tls_log(const char *what, const char *detail)
{
  static int tagged;
  stralloc w = {0}, d = {0};
  if (!tagged) {
    char tag[8 + FMT_ULONG] = "pid ";
    tag[4 + fmt_ulong(tag + 4, (unsigned long)getpid())] = 0;
    log_tag(tag);
    tagged = 1;
  }
  if (sanitize_cats(&w, what, 300) && stralloc_0(&w)
      && (!detail || (sanitize_cats(&d, detail, 300) && stralloc_0(&d))))
    warn(w.s, detail ? ": " : "", detail ? d.s : "", (char *)0);
  stralloc_free(&w);
  stralloc_free(&d);
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
