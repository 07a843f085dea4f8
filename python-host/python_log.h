/* Logging for qmail-idcheck-python: stderr is the log (multilog), so every
 * message is one line, written with one write(2), so lines from concurrent
 * writers never interleave mid-line. */
#ifndef PYTHON_LOG_H
#define PYTHON_LOG_H
#include <stddef.h>

#define LOG_LINE_MAX 1000   /* message bytes kept per line; the rest is cut */

/* "qmail-idcheck: pid N <tag>: <msg>\n"; bytes outside 32..126 become '?'. */
void log_line(const char *tag, const char *msg, size_t len);
/* The pid lines carry: a warm server's worker sets its client's before each
 * call; otherwise IDCHECK_PID, else our own. */
void log_set_pid(long pid);
void log_python(const char *msg);   /* tag "python": this program's own news */
/* "pid N python:", for lib/log's log_tag: a program whose PROG is
 * "qmail-idcheck" then warns and dies in the same lines as log_python. */
const char *log_python_tag(void);

#endif
