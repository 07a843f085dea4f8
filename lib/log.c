#include "log.h"
#include "fmt.h"
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_LOG 4096

static char tag[64];

void log_tag(const char *t)
{
  size_t len = t ? strlen(t) : 0;
  if (len >= sizeof tag) len = sizeof tag - 1;
  memcpy(tag, t ? t : "", len);
  tag[len] = 0;
}

static size_t put(char *line, size_t at, const char *s)
{
  size_t len = strlen(s);
  if (len > LINE_MAX_LOG - 1 - at) len = LINE_MAX_LOG - 1 - at;
  memcpy(line + at, s, len);
  return at + len;
}

static void emit(const char *first, va_list ap, const char *error)
{
  char line[LINE_MAX_LOG];
  size_t at = put(line, 0, PROG);
  at = put(line, at, ": ");
  if (*tag) { at = put(line, at, tag); at = put(line, at, " "); }
  for (const char *s = first; s; s = va_arg(ap, const char *)) at = put(line, at, s);
  if (error) { at = put(line, at, ": "); at = put(line, at, error); }
  line[at++] = '\n';
  if (write(2, line, at) < 0) {}
}

void warn(const char *s, ...)
{
  va_list ap;
  va_start(ap, s);
  emit(s, ap, 0);
  va_end(ap);
}

void warn_sys(const char *s, ...)
{
  const char *error = strerror(errno);
  va_list ap;
  va_start(ap, s);
  emit(s, ap, error);
  va_end(ap);
}

void die(int code, const char *s, ...)
{
  va_list ap;
  va_start(ap, s);
  emit(s, ap, 0);
  va_end(ap);
  _exit(code);
}

void die_sys(int code, const char *s, ...)
{
  const char *error = strerror(errno);
  va_list ap;
  va_start(ap, s);
  emit(s, ap, error);
  va_end(ap);
  _exit(code);
}

void dieusage(const char *usage)
{
  die(100, "usage: ", usage, (char *)0);
}

const char *log_num(char *buf, long long v)
{
  /* fmt.h declares fmt_* pure: a call whose result is unused may be
   * dropped (Debian 12 drops fmt_ulong0's), so the length is used here */
  buf[fmt_longlong(buf, v)] = 0;
  return buf;
}
