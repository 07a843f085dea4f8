#include "tls.h"
#include "client.h"
#include "deadline.h"
#include "env_number.h"
#include "log.h"
#include "ucspi_tls.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DETAILS_WAIT_MS_DEFAULT (35 * 1000)   /* the TLS end's 30 s handshake, and some */

static int ctl = -1, rfd = -1, wfd = -1;
static int active;
static stralloc trace;

/* A descriptor number from the environment, if that descriptor is open. */
static int fd_from_env(const char *name)
{
  unsigned long fd = env_ulong(name, 0, 3, 65535);
  if (!fd || fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) return -1;   /* prog never gets it */
  return (int)fd;
}

/* Only SSL_PROTOCOL, SSL_CIPHER and SSL_TLS_SNI_SERVERNAME reach the trace:
 * the first two are the TLS library's words, the name is the client's and is
 * cut to what a host name can hold. */
static void trace_make(void)
{
  const char *proto = getenv("SSL_PROTOCOL"), *cipher = getenv("SSL_CIPHER");
  const char *sni = getenv("SSL_TLS_SNI_SERVERNAME");
  trace.len = 0;
  if (!stralloc_cats(&trace, proto && *proto ? proto : "TLS")) return;
  if (cipher && *cipher && (!stralloc_cats(&trace, " cipher=") || !stralloc_cats(&trace, cipher)))
    return;
  if (sni && *sni && stralloc_cats(&trace, " sni=")) {
    for (size_t i = 0; sni[i] && i < 253; ++i) {
      char c = sni[i];
      int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
            || c == '.' || c == '-' || c == '_';
      if (!stralloc_append(&trace, ok ? &c : "?")) return;
    }
  }
  for (size_t i = 0; i < trace.len; ++i)   /* one word each, printable */
    if (trace.s[i] < 32 || trace.s[i] > 126) trace.s[i] = '?';
  stralloc_0(&trace);
}

void tls_setup(void)
{
  if (getenv(UCSPI_TLS_CTLFD)) {
    ctl = fd_from_env(UCSPI_TLS_CTLFD);
    rfd = fd_from_env(UCSPI_TLS_READFD);
    wfd = fd_from_env(UCSPI_TLS_WRITEFD);
    if (ctl < 0 || rfd < 0 || wfd < 0) {
      warn("warning: SSLCTLFD, SSLREADFD and SSLWRITEFD do not name open descriptors: "
           "STARTTLS is not offered", (char *)0);
      ctl = rfd = wfd = -1;
    }
    /* before the handshake, nothing in the environment speaks for TLS */
    for (const char *const *n = ucspi_tls_detail_names; *n; ++n) unsetenv(*n);
  } else if (getenv("SSL_PROTOCOL")) {
    active = 1;   /* implicit TLS: the details are already here */
    trace_make();
  }
  unsetenv(UCSPI_TLS_CTLFD);
  unsetenv(UCSPI_TLS_READFD);
  unsetenv(UCSPI_TLS_WRITEFD);
}

int tls_possible(void) { return active || ctl >= 0; }
int tls_offered(void) { return !active && ctl >= 0; }
int tls_active(void) { return active; }
const char *tls_trace(void) { return active && trace.len ? trace.s : 0; }

/* The details, up to their empty entry: 1 complete, 0 EOF first, or too
 * long, or the deadline. */
static int details_read(stralloc *details, deadline_t deadline)
{
  details->len = 0;
  for (;;) {
    size_t n = details->len;
    const char *s = details->s;
    if (n && !s[n - 1] && (n == 1 || !s[n - 2])) return 1;   /* the empty entry */
    if (n >= UCSPI_TLS_DETAILS_MAX || !stralloc_readyplus(details, 512)) return 0;
    ssize_t r = read_deadline(ctl, details->s + n, 512, deadline);
    if (r <= 0) return 0;
    details->len += (size_t)r;
  }
}

/* NAME=value entries to the environment (only SSL_* names); NAME alone
 * (s6-ucspitlsd's way of saying it has no value) is unset. */
static void details_apply(stralloc *details)
{
  for (size_t pos = 0; pos < details->len && details->s[pos]; ) {
    char *entry = details->s + pos;
    size_t len = strlen(entry);
    char *eq = strchr(entry, '=');
    if (!strncmp(entry, "SSL_", 4)) {
      if (eq) { *eq = 0; setenv(entry, eq + 1, 1); *eq = '='; }
      else unsetenv(entry);
    }
    pos += len + 1;
  }
}

int tls_start(void)
{
  static stralloc details;
  char command = UCSPI_TLS_START_DETAILS;
  long long wait_ms = env_seconds_ms("IDCHECK_TLS_TIMEOUT", DETAILS_WAIT_MS_DEFAULT - 5000) + 5000;
  if (write_all_deadline(ctl, &command, 1, deadline_in(wait_ms)) < 0
      || !details_read(&details, deadline_in(wait_ms))) {
    warn("TLS handshake failed: the connection is closed", (char *)0);
    return 0;
  }
  details_apply(&details);
  close(ctl);
  ctl = -1;
  active = 1;
  trace_make();
  client_switch(rfd, wfd);
  /* the network connection is the TLS end's now: when it closes it, the
   * client must see the close, not a copy held open here */
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    close(null);
  }
  warn("TLS started: ", trace.s, (char *)0);
  return 1;
}
