/* What qmail-idcheck-tls and qmail-idcheck-tls-io share: their log line,
 * and leaving with the next program's exit status. */
#ifndef TLS_COMMON_H
#define TLS_COMMON_H
#include <sys/types.h>

#define TLS_PROG "qmail-idcheck-tls"   /* both log as this: one program to the admin */

/* "qmail-idcheck-tls: pid N what: detail" on stderr, both sanitized (a TLS
 * library's error text can quote what the client sent). detail may be 0. */
void tls_log(const char *what, const char *detail);
void tls_die(int code, const char *what, const char *detail) __attribute__((noreturn));

/* prog's wait status (111 as an exit code when it cannot be waited for). */
int tls_wait_prog(pid_t pid);
/* Leaves as prog did: its exit code, or killed by the same signal. */
void tls_exit_like(int status) __attribute__((noreturn));

#endif
