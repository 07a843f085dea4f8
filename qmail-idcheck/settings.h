/* The proxy's settings, read once from the environment at the start (so a
 * tcprules file sets them per client); qmail-idcheck(8) documents each. */
#ifndef SETTINGS_H
#define SETTINGS_H
#include <stddef.h>
#include <stdint.h>

struct settings {
  const char *remote_ip;        /* TCPREMOTEIP, or 0 */
  int64_t timeout_ms;           /* IDCHECK_TIMEOUT, as qmail-smtpd's timeoutsmtpd */
  int64_t calltimeout_ms;       /* IDCHECK_CALLTIMEOUT */
  int onerror_accept;           /* IDCHECK_ONERROR=accept */
  int skip_policy;              /* RELAYCLIENT or IDCHECK_SKIP: no calls at all */
  const char *keyword;          /* IDCHECK_KEYWORD, a usable one */
  size_t bodymax;               /* IDCHECK_BODYMAX */
  unsigned long maxrcpt;        /* IDCHECK_MAXRCPT */
  int tls_required;             /* IDCHECK_TLS_REQUIRED: no MAIL before TLS */
};
extern struct settings settings;

void settings_read(void);

#endif
