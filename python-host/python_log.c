#include "python_log.h"
#include "env_number.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Lines carry the session's pid (the proxy's, from IDCHECK_PID), so that one
 * grep follows a session through the proxy's and the policy's lines. */
static long pid;

void log_set_pid(long p)
{
  pid = p;
}

static long session_pid(void)
{
  if (!pid) {
    pid = (long)env_ulong("IDCHECK_PID", (unsigned long)getpid(), 1, 0x7fffffffUL);
  }
  return pid;
}

void log_line(const char *tag, const char *msg, size_t len)
{
  /* A fixed buffer: logging must work when malloc does not. */
  char line[64 + 32 + LOG_LINE_MAX + 2];
  int n = snprintf(line, 96, "qmail-idcheck: pid %ld %.24s: ", session_pid(), tag);
  if (n < 0) return;
  size_t p = (size_t)n;
  if (len > LOG_LINE_MAX) len = LOG_LINE_MAX;
  for (size_t i = 0; i < len; ++i) {
    unsigned char c = (unsigned char)msg[i];
    line[p++] = (c >= 32 && c <= 126) ? (char)c : '?';
  }
  line[p++] = '\n';
  int saved = errno;
  while (write(2, line, p) < 0 && errno == EINTR) {}
  errno = saved;
}

void log_python(const char *msg)
{
  log_line("python", msg, strlen(msg));
}

const char *log_python_tag(void)
{
  static char tag[48];
  snprintf(tag, sizeof tag, "pid %ld python:", session_pid());
  return tag;
}
