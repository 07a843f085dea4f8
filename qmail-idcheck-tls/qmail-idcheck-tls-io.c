/* qmail-idcheck-tls-io: the TLS engine of qmail-idcheck-tls, which execs it
 * (same pid, prog still its child) once TLS is wanted; never run by hand.
 * Its command line, from qmail-idcheck-tls:
 *
 *   qmail-idcheck-tls-io check CERTFD KEYFD
 *       parse the certificate and key, say whether they are usable
 *   qmail-idcheck-tls-io implicit CERTFD KEYFD prog [arg ...]
 *       handshake on fds 0/1, then run prog with the details in its
 *       environment and pipes as its fds 0/1, and relay
 *   qmail-idcheck-tls-io ucspi CERTFD KEYFD PID CTLFD APPIN APPOUT
 *       prog (PID) asked for TLS on the control socket CTLFD ("-" after 'y':
 *       no details); handshake on fds 0/1, the details on CTLFD, then relay
 *       between the client and prog's pipes (APPIN: what prog writes, APPOUT:
 *       what prog reads)
 *
 * CERTFD and KEYFD are the files qmail-idcheck-tls opened and checked (the
 * same number when one file holds both). The exchange on CTLFD is in
 * lib/ucspi_tls.h. Exits as prog did (implicit, ucspi), or 0/111 (check). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "deadline.h"
#include "env_number.h"
#include "pem_file.h"
#include "scan.h"
#include "spawn_stdio.h"
#include "stralloc.h"
#include "tls_common.h"
#include "tls_end.h"

#define USAGE "usage: qmail-idcheck-tls-io check|implicit|ucspi CERTFD KEYFD ... (run by qmail-idcheck-tls)"
#define HANDSHAKE_DEFAULT 30       /* seconds: IDCHECK_TLS_TIMEOUT */
#define IDLE_DEFAULT 1800          /* seconds: IDCHECK_TLS_IDLE, past qmail-smtpd's 1200 */

static struct pem_file cert = { .fd = -1 }, key = { .fd = -1 };
static struct tls_end tls = { .net_in = 0, .net_out = 1 };
static stralloc why, details;

static void die_nomem(void) { tls_die(111, "fatal", "out of memory"); }
static void dieusage(void) { tls_die(100, USAGE, 0); }

static void die_why(int code, const char *what)
{
  if (!stralloc_0(&why)) die_nomem();
  if (what) tls_die(code, what, why.s);
  tls_die(code, why.s, 0);
}

/* Leaves as prog did, having freed what LeakSanitizer would count. */
static void finish(pid_t pid)
{
  int status = tls_wait_prog(pid);
  tls_end_free(&tls);
  pem_file_wipe(&cert);
  pem_file_wipe(&key);
  stralloc_free(&why);
  stralloc_free(&details);
  tls_exit_like(status);
}

static int fd_arg(const char *s)
{
  unsigned long v;
  size_t n = scan_ulong(s, &v);
  if (!n || s[n] || v > 65535) dieusage();
  return (int)v;
}

static int64_t seconds_from_env(const char *name, unsigned long dflt)
{
  const char *s = getenv(name);
  if (s && *s && !env_seconds_ms(name, 0))
    tls_log(name, "not a number of seconds from 1 to 86400: the default is used");
  return env_seconds_ms(name, (long long)dflt * 1000);
}

/* The files from the descriptors qmail-idcheck-tls opened, then configured. */
static int configure(int certfd, int keyfd)
{
  if (!pem_file_read_fd(&cert, certfd, "the certificate", &why)) return 0;
  if (keyfd != certfd) {
    if (!pem_file_read_fd(&key, keyfd, "the key", &why)) return 0;
    close(keyfd);
  }
  close(certfd);
  cert.fd = key.fd = -1;
  int ok = tls_end_configure(&tls, &cert, keyfd != certfd ? &key : &cert, &why);
  pem_file_wipe(&key);
  pem_file_wipe(&cert);
  return ok;
}

/* The details as variables (-i): each "NAME=value\0" up to the empty one. */
static void env_details(void)
{
  size_t i = 0;
  while (i < details.len && details.s[i]) {
    char *entry = details.s + i;
    size_t len = strlen(entry);
    char *eq = strchr(entry, '=');
    if (eq) {
      *eq = 0;
      if (setenv(entry, eq + 1, 1) < 0) die_nomem();
      *eq = '=';
    }
    i += len + 1;
  }
}

static void run_implicit(char **argv, int64_t handshake_ms, int64_t idle_ms)
{
  int to_app[2], from_app[2];
  if (!tls_end_handshake(&tls, deadline_in(handshake_ms), &why)) {
    tls_end_hang_up(&tls);
    die_why(111, 0);
  }
  if (!tls_end_details(&tls, &details)) die_nomem();
  env_details();           /* qmail-idcheck-tls removed any inherited ones */
  if (pipe2(to_app, O_CLOEXEC) < 0 || pipe2(from_app, O_CLOEXEC) < 0) {
    tls_end_hang_up(&tls);
    tls_die(111, "fatal", strerror(errno));
  }
  pid_t pid;
  int r = spawn_stdio(&pid, argv[0], argv, to_app[0], from_app[1], 1);
  if (r) {
    tls_end_hang_up(&tls);
    tls_die(111, "cannot run prog", strerror(r));
  }
  close(to_app[0]);
  close(from_app[1]);
  tls_end_relay(&tls, from_app[0], to_app[1], idle_ms);
  close(0);
  close(1);
  finish(pid);
}

/* TLS did not start: no details (EOF on the control socket tells prog), the
 * client hung up on; prog ends its session and we leave as it does. */
static void give_up(pid_t pid, int ctl, int app_in, int app_out, const char *what)
{
  if (!stralloc_0(&why)) die_nomem();
  tls_log(what ? what : why.s, what ? why.s : 0);
  if (ctl >= 0) close(ctl);
  tls_end_hang_up(&tls);
  close(app_in);
  close(app_out);
  close(0);
  close(1);
  finish(pid);
}

static void run_ucspi(char **args, int certfd, int keyfd, int64_t handshake_ms, int64_t idle_ms)
{
  unsigned long v;
  size_t n = scan_ulong(args[0], &v);
  if (!n || args[0][n] || !v || v > 0x7fffffffUL) dieusage();
  pid_t pid = (pid_t)v;
  int ctl = strcmp(args[1], "-") ? fd_arg(args[1]) : -1;
  int app_in = fd_arg(args[2]), app_out = fd_arg(args[3]);

  if (!configure(certfd, keyfd)) give_up(pid, ctl, app_in, app_out, "TLS not started");
  if (!tls_end_handshake(&tls, deadline_in(handshake_ms), &why))
    give_up(pid, ctl, app_in, app_out, 0);
  if (ctl >= 0) {
    if (!tls_end_details(&tls, &details)) die_nomem();
    if (write_all_deadline(ctl, details.s, details.len, deadline_in(handshake_ms)) < 0) {
      why.len = 0;
      if (!stralloc_cats(&why, strerror(errno))) die_nomem();
      give_up(pid, ctl, app_in, app_out, "cannot give prog the TLS details");
    }
    close(ctl);
  }
  tls_end_relay(&tls, app_in, app_out, idle_ms);
  close(0);
  close(1);
  finish(pid);
}

int main(int argc, char **argv)
{
  if (argc < 4) dieusage();
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);   /* reset by the exec: the key is here */
  int certfd = fd_arg(argv[2]), keyfd = fd_arg(argv[3]);
  int64_t handshake_ms = seconds_from_env("IDCHECK_TLS_TIMEOUT", HANDSHAKE_DEFAULT);
  int64_t idle_ms = seconds_from_env("IDCHECK_TLS_IDLE", IDLE_DEFAULT);
  signal(SIGPIPE, SIG_IGN);

  if (!strcmp(argv[1], "check")) {
    if (argc != 4) dieusage();
    if (!configure(certfd, keyfd)) die_why(111, 0);
    tls_log("certificate and key are usable", 0);
    tls_end_free(&tls);
    stralloc_free(&why);
    return 0;
  }
  if (!strcmp(argv[1], "implicit")) {
    if (argc < 5) dieusage();
    if (!configure(certfd, keyfd)) die_why(111, "connection refused");
    run_implicit(argv + 4, handshake_ms, idle_ms);
  }
  if (!strcmp(argv[1], "ucspi")) {
    if (argc != 8) dieusage();
    run_ucspi(argv + 4, certfd, keyfd, handshake_ms, idle_ms);
  }
  dieusage();
}
