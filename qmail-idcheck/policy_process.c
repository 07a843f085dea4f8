/* checkID in a qmail-idcheck-python process of this session's own, started at
 * the first call. A separate process keeps libpython out of sessions that never
 * reach MAIL, lets a hung policy be killed at its deadline, and keeps a crash
 * inside a C extension from taking the SMTP session with it. */
#include "policy_process.h"
#include "policy_wire.h"
#include "sibling.h"
#include "spawn_stdio.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef IDCHECK_BINDIR
#define IDCHECK_BINDIR "/usr/local/bin"
#endif

static pid_t child = -1;
static int to_child = -1, from_child = -1;
static stralloc inbuf;

static void child_stop(void)
{
  if (to_child >= 0) close(to_child);
  if (from_child >= 0) close(from_child);
  to_child = from_child = -1;
  if (child > 0) {
    kill(child, SIGKILL);
    while (waitpid(child, 0, 0) < 0 && errno == EINTR) {}
  }
  child = -1;
  inbuf.len = 0;
}

static int child_start(stralloc *why)
{
  static const char *prog;
  if (!prog) prog = sibling_path("qmail-idcheck-python", "IDCHECK_PYTHONPROG", IDCHECK_BINDIR);
  int req[2], rep[2];
  if (pipe2(req, O_CLOEXEC) < 0) goto fail;
  if (pipe2(rep, O_CLOEXEC) < 0) { close(req[0]); close(req[1]); goto fail; }
  char *argv[] = { (char *)prog, 0 };
  int r = spawn_stdio(&child, prog, argv, req[0], rep[1], 0);
  if (r != 0) {
    close(req[0]); close(req[1]); close(rep[0]); close(rep[1]);
    child = -1;
    errno = r;
    goto fail;
  }
  close(req[0]);
  close(rep[1]);
  to_child = req[1];
  from_child = rep[0];
  fcntl(to_child, F_SETFL, O_NONBLOCK);
  fcntl(from_child, F_SETFL, O_NONBLOCK);
  return 1;
fail:
  stralloc_copys(why, "cannot start the policy process: ");
  stralloc_cats(why, strerror(errno));
  return 0;
}

static void why_died(stralloc *why)
{
  int status;
  stralloc_copys(why, "the policy process died");
  if (child > 0 && waitpid(child, &status, WNOHANG) == child) {
    char num[48];
    if (WIFSIGNALED(status))
      snprintf(num, sizeof num, " (signal %d)", WTERMSIG(status));
    else
      snprintf(num, sizeof num, " (exit %d)", WEXITSTATUS(status));
    stralloc_cats(why, num);
    child = -1;
  }
}

int policy_process_call(const stralloc *request, stralloc *reply, deadline_t deadline,
                        stralloc *why)
{
  if (child < 0 && !child_start(why)) return 0;
  if (write_all_deadline(to_child, request->s, request->len, deadline) < 0) {
    if (errno == ETIMEDOUT) stralloc_copys(why, "checkID call timed out");
    else why_died(why);
    child_stop();
    return 0;
  }
  struct wire_frame f;
  enum wire_read st = wire_frame_read_one(from_child, &inbuf, deadline, &f);
  if (st == WIRE_OK && !stralloc_copyb(reply, f.payload, f.plen)) st = WIRE_NOMEM;
  switch (st) {
    case WIRE_OK: return 1;
    case WIRE_MALFORMED: stralloc_copys(why, "malformed reply from the policy process"); break;
    case WIRE_EXTRA: stralloc_copys(why, "unexpected data from the policy process"); break;
    case WIRE_TIMEOUT: stralloc_copys(why, "checkID call timed out"); break;
    case WIRE_NOMEM: stralloc_copys(why, "out of memory"); break;
    case WIRE_EOF: case WIRE_ERROR: why_died(why); break;
  }
  child_stop();
  return 0;
}

void policy_process_end(void)
{
  child_stop();
}
