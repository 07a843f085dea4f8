/* qmail-idcheck-tls: the TLS end of an SMTP chain, UCSPI-TLS style (the
 * server side of fehcom's sslserver -n and skarnet's s6-ucspitlsd), so that
 * neither qmail-idcheck nor qmail-smtpd ever links a TLS library:
 *
 *   tcpserver ... rblsmtpd-plus qmail-idcheck-tls [-i] qmail-idcheck qmail-smtpd
 *
 * The protocol, exactly (lib/ucspi_tls.h has it field by field):
 *  - prog runs as a child, with SSLCTLFD (a socketpair), SSLREADFD and
 *    SSLWRITEFD (two pipes) set; its fds 0/1 stay the network connection, so
 *    until TLS starts nothing is copied and this process only waits.
 *  - prog writes 'Y' (or 'y') on SSLCTLFD: this process becomes
 *    qmail-idcheck-tls-io (exec, same pid, prog still its child), which takes
 *    over fds 0/1, does the handshake within IDCHECK_TLS_TIMEOUT, writes the
 *    details "NAME=value\0...\0" (after 'Y' only), closes SSLCTLFD and then
 *    relays between the client (TLS) and prog's two pipes. A failed
 *    handshake: SSLCTLFD closed without details, the connection shut down.
 *  - prog closes SSLCTLFD or exits without asking: nothing more happens.
 * Either way this process exits when prog has, with prog's exit status.
 * With -i (implicit TLS, SMTPS on port 465) it becomes qmail-idcheck-tls-io
 * at once: the handshake comes first, and prog gets plaintext on pipes as
 * fds 0/1 and the details in its environment.
 *
 * This program links no TLS library: a session that never asks for TLS pays
 * for a small exec, two file reads and a vfork, no cryptography (the TLS
 * engine is a 5 MB static binary). The certificate and key are opened and
 * checked for their PEM blocks before prog runs, their contents dropped, the
 * descriptors kept for qmail-idcheck-tls-io; prog never gets them.
 * Missing or unreadable: one log line, and prog runs without the three
 * variables (with -i the connection is refused). See man/qmail-idcheck-tls.8. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "fmt.h"
#include "pem_file.h"
#include "sibling.h"
#include "spawn_stdio.h"
#include "stralloc.h"
#include "tls_common.h"
#include "ucspi_tls.h"

#define USAGE "usage: qmail-idcheck-tls [ -i ] prog [ arg ... ] | qmail-idcheck-tls -c"
#define DEFAULT_CERT "/var/qmail/control/servercert.pem"
#define ENGINE "qmail-idcheck-tls-io"

static struct pem_file cert = { .fd = -1 }, key = { .fd = -1 };
static stralloc why;

static void die_nomem(void) { tls_die(111, "fatal", "out of memory"); }

/* The certificate and key opened, read and PEM-checked; 0 with why set. */
static int load_files(void)
{
  const char *certpath = getenv("IDCHECK_TLS_CERT");
  if (!certpath || !*certpath) certpath = DEFAULT_CERT;
  const char *keypath = getenv("IDCHECK_TLS_KEY");
  if (!keypath || !*keypath) keypath = certpath;

  if (!pem_file_open(&cert, certpath, &why)) return 0;
  if (!pem_has_certificate(&cert)) {
    why.len = 0;
    if (!stralloc_cats(&why, "no PEM certificate in ") || !stralloc_cats(&why, certpath)) die_nomem();
    return 0;
  }
  if (strcmp(keypath, certpath) == 0) {
    key = cert;            /* one file, one descriptor; the contents are cert's */
  } else if (!pem_file_open(&key, keypath, &why)) {
    return 0;
  }
  if (!pem_has_private_key(&key)) {
    why.len = 0;
    if (!stralloc_cats(&why, "no unencrypted PEM private key in ") || !stralloc_cats(&why, keypath))
      die_nomem();
    return 0;
  }
  /* an engine that cannot run would answer every STARTTLS with a hang-up */
  const char *engine = sibling_path(ENGINE, "IDCHECK_TLS_IO", IDCHECK_BINDIR);
  if (access(engine, X_OK) < 0) {
    why.len = 0;
    if (!stralloc_cats(&why, "cannot run ") || !stralloc_cats(&why, engine)
        || !stralloc_cats(&why, ": ") || !stralloc_cats(&why, strerror(errno)))
      die_nomem();
    return 0;
  }
  return 1;
}

/* The contents go; the descriptors stay for qmail-idcheck-tls-io. */
static void drop_files(void)
{
  if (key.s != cert.s) pem_file_wipe(&key);
  pem_file_wipe(&cert);
  key.s = 0;
  key.len = 0;
}

static void close_files(void)
{
  if (key.fd >= 0 && key.fd != cert.fd) close(key.fd);
  if (cert.fd >= 0) close(cert.fd);
  key.fd = cert.fd = -1;
}

/* ---- the environment prog gets ---- */

static void env_set(const char *name, int fd)
{
  char num[FMT_ULONG];
  num[fmt_ulong(num, (unsigned long)fd)] = 0;
  if (setenv(name, num, 1) < 0) die_nomem();
}

/* No UCSPI-TLS channel and no TLS details but ours: none inherited (from
 * tcprules, say) can pass for them. */
static void env_clean(void)
{
  unsetenv(UCSPI_TLS_CTLFD);
  unsetenv(UCSPI_TLS_READFD);
  unsetenv(UCSPI_TLS_WRITEFD);
  for (int i = 0; ucspi_tls_detail_names[i]; ++i) unsetenv(ucspi_tls_detail_names[i]);
}

static void inheritable(int fd)
{
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) < 0) tls_die(111, "fatal", strerror(errno));
}

/* ---- becoming qmail-idcheck-tls-io ---- */

static char *num_arg(int n)
{
  static char space[8][FMT_ULONG + 1];
  static int used;
  char *s = space[used++ & 7];
  if (n < 0) return strcpy(s, "-");
  s[fmt_ulong(s, (unsigned long)n)] = 0;
  return s;
}

/* Returns only if the exec failed (logged). */
static void become_engine(char **args, int nargs)
{
  const char *path = sibling_path(ENGINE, "IDCHECK_TLS_IO", IDCHECK_BINDIR);
  inheritable(cert.fd);
  inheritable(key.fd);
  args[0] = (char *)path;
  args[nargs] = 0;
  execv(path, args);
  tls_log("cannot run " ENGINE, strerror(errno));
}

/* ---- UCSPI-TLS: prog asks for TLS, or never does ---- */

static int pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
  return (int)syscall(SYS_pidfd_open, pid, 0);
#else
  (void)pid;
  return -1;
#endif
}

/* The command byte, or 0 when prog closed the channel or exited first. No
 * deadline of its own: prog's lifetime bounds it. */
static char wait_command(int ctl, pid_t pid)
{
  struct pollfd p[2];
  int pidfd = pidfd_of(pid);   /* prog's end of ctl may outlive prog in a child of its */
  char c = 0;
  p[0].fd = ctl;
  p[0].events = POLLIN;
  p[1].fd = pidfd;
  p[1].events = POLLIN;
  for (;;) {
    p[0].revents = p[1].revents = 0;
    if (poll(p, pidfd >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents) {
      ssize_t n = read(ctl, &c, 1);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n != 1) c = 0;
      break;
    }
    if (p[1].revents) break;
  }
  if (pidfd >= 0) close(pidfd);
  return c;
}

static void run_ucspi(char **argv)
{
  int ctl[2], to_app[2], from_app[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0
      || pipe2(to_app, O_CLOEXEC) < 0 || pipe2(from_app, O_CLOEXEC) < 0)
    tls_die(111, "fatal", strerror(errno));
  inheritable(ctl[1]);
  inheritable(to_app[0]);
  inheritable(from_app[1]);
  env_clean();
  env_set(UCSPI_TLS_CTLFD, ctl[1]);
  env_set(UCSPI_TLS_READFD, to_app[0]);
  env_set(UCSPI_TLS_WRITEFD, from_app[1]);
  pid_t pid;
  int r = spawn_stdio(&pid, argv[0], argv, 0, 1, 1);
  if (r) tls_die(111, "cannot run prog", strerror(r));
  close(ctl[1]);
  close(to_app[0]);
  close(from_app[1]);

  char command = wait_command(ctl[0], pid);
  if (command == UCSPI_TLS_START_DETAILS || command == UCSPI_TLS_START) {
    char *args[9] = { 0, "ucspi", num_arg(cert.fd), num_arg(key.fd), num_arg(pid),
                      num_arg(command == UCSPI_TLS_START ? -1 : ctl[0]),
                      num_arg(from_app[0]), num_arg(to_app[1]) };
    shutdown(ctl[0], SHUT_RD);
    if (command == UCSPI_TLS_START) { close(ctl[0]); ctl[0] = -1; }
    else inheritable(ctl[0]);
    inheritable(from_app[0]);
    inheritable(to_app[1]);
    become_engine(args, 8);
    /* no TLS after all: no details, and the client, mid-handshake, hung up on */
    shutdown(0, SHUT_RDWR);
  } else if (command) {
    tls_log("not a UCSPI-TLS command: TLS not started", 0);
  }
  /* the connection is prog's alone from here */
  if (ctl[0] >= 0) close(ctl[0]);
  close(to_app[1]);
  close(from_app[0]);
  close_files();
  close(0);
  close(1);
  tls_exit_like(tls_wait_prog(pid));
}

int main(int argc, char **argv)
{
  int implicit = 0, check = 0;
  while (argc > 1 && argv[1][0] == '-' && argv[1][1]) {
    if (!strcmp(argv[1], "--")) { --argc; ++argv; break; }
    for (const char *o = argv[1] + 1; *o; ++o) {
      if (*o == 'i') implicit = 1;
      else if (*o == 'c') check = 1;
      else tls_die(100, USAGE, 0);
    }
    --argc;
    ++argv;
  }
  if (!check && argc < 2) tls_die(100, USAGE, 0);
  /* The key files are open in this process: no core file, and no ptrace
   * from prog, which runs as the same user. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  int usable = load_files();
  drop_files();
  if (!usable) {
    if (!stralloc_0(&why)) die_nomem();
    if (check) tls_die(111, why.s, 0);
    if (implicit) tls_die(111, "connection refused", why.s);
    tls_log("STARTTLS not offered", why.s);
    close_files();
    env_clean();
    execvp(argv[1], argv + 1);
    tls_die(111, "cannot run prog", strerror(errno));
  }
  if (check) {
    char *args[5] = { 0, "check", num_arg(cert.fd), num_arg(key.fd) };
    become_engine(args, 4);
    _exit(111);
  }
  signal(SIGPIPE, SIG_IGN);
  if (implicit) {
    /* qmail-idcheck-tls-io implicit CERTFD KEYFD prog [arg ...] */
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args) die_nomem();
    args[1] = "implicit";
    args[2] = num_arg(cert.fd);
    args[3] = num_arg(key.fd);
    for (int i = 1; i < argc; ++i) args[3 + i] = argv[i];
    env_clean();
    become_engine(args, argc + 3);
    _exit(111);
  }
  run_ucspi(argv + 1);
  return 111;
}
