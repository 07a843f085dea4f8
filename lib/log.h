/* One way for every program to log and die: a line on standard error,
 * "PROG: [tag ]text", written with one write(2) so lines from the many
 * processes of a session never interleave. Texts are joined from the string
 * arguments up to a null pointer (djb's strerr style). Text a client or a
 * policy controls must go through sanitize_* first. */
#ifndef LOG_H
#define LOG_H

extern const char *PROG;   /* each program defines it */

/* A tag after "PROG: " on every line, e.g. "pid 1234" (copied; 0: none). */
void log_tag(const char *tag);

void warn(const char *s, ...) __attribute__((sentinel));
/* warn, then _exit(code): 100 permanent or usage, 111 temporary. */
void die(int code, const char *s, ...) __attribute__((sentinel, noreturn));
/* The same, with ": " and strerror(errno) at the end. */
void warn_sys(const char *s, ...) __attribute__((sentinel));
void die_sys(int code, const char *s, ...) __attribute__((sentinel, noreturn));
void dieusage(const char *usage) __attribute__((noreturn));   /* "usage: ..." exit 100 */

/* A number for a line: v in decimal in buf, which has room for LOG_NUM. */
#define LOG_NUM 24
const char *log_num(char *buf, long long v);

#endif
