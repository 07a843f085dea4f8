/* qmail-smtpd-standin: a test double for notqmail 1.09's qmail-smtpd.
 *
 * qmail is not packaged by Debian, so the suite runs this under tcpserver
 * instead. Every reply, exit and byte handed to the queue program follows
 * tests/QMAIL-PROTOCOL; where that is silent, notqmail's behaviour is copied,
 * down to its I/O rhythm (what it writes, in which write() calls: its 512-byte
 * reply buffer, flushed before every read of at most 1024 bytes) and its
 * integer quirks. The suite runs the same dialogues against a real notqmail
 * qmail-smtpd to keep it that way. Deliberately left out:
 * control/morercpthosts.cdb, and the 421 when the machine's addresses cannot
 * be listed.
 *
 * Environment: STANDIN_HOME (chdir there first; real qmail uses /var/qmail),
 * TCPREMOTEIP, TCPREMOTEHOST, TCPREMOTEINFO, TCPLOCALHOST, TCPLOCALIP,
 * RELAYCLIENT, DATABYTES, QMAILQUEUE (else bin/qmail-queue under home). */

#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "byte.h"
#include "case.h"
#include "fmt.h"
#include "openreadclose.h"
#include "scan.h"
#include "str.h"
#include "stralloc.h"

#include "deadline.h"

#define MAXHOPS 100
#define ADDR_MAX 900        /* addresses this long (with the NUL) are refused */
#define QQ_ERRTEXT_MAX 255  /* notqmail keeps this much of the fd-6 text */

/* qmail's types: an int and an unsigned int, whatever the control files say */
static int timeout_seconds = 1200;
static unsigned int databytes;      /* 0: no limit */

/* qmail's scan_ulong: the leading digits, wrapping silently on overflow
 * (libowfat's stops before it); the number of digits read. */
static size_t scan_ulong_wrapping(const char *s, unsigned long *u)
{
  size_t pos = 0;
  unsigned long result = 0;
  while (s[pos] >= '0' && s[pos] <= '9') result = result * 10 + (unsigned long)(s[pos++] - '0');
  *u = result;
  return pos;
}

/* ---- replies: qmail-smtpd's 512-byte output buffer ---- */

static char outbuf[512];            /* qmail-smtpd's ssoutbuf */
static size_t outlen;

static int64_t timeout_ms(void) { return (int64_t)timeout_seconds * 1000; }

/* qmail's safewrite: a reply that cannot be written ends the session */
static void out_write(const char *s, size_t len)
{
  if (len && write_all_deadline(1, s, len, deadline_in(timeout_ms())) == -1) _exit(1);
}

static void out_flush(void)
{
  out_write(outbuf, outlen);
  outlen = 0;
}

/* substdio_put: a piece that does not fit flushes the buffer first, and one
 * larger than the buffer is then written on its own. */
static void out_put(const char *s, size_t len)
{
  if (len > sizeof outbuf - outlen) {
    out_flush();
    if (len > sizeof outbuf) { out_write(s, len); return; }
  }
  byte_copy(outbuf + outlen, len, s);
  outlen += len;
}

static void out_puts(const char *s) { out_put(s, str_len(s)); }

/* A fatal reply goes out after whatever is pending, then exit 1. */
static void __attribute__((noreturn)) die_reply(const char *reply)
{
  out_puts(reply);
  out_flush();
  _exit(1);
}

#define die_nomem() die_reply("421 out of memory (#4.3.0)\r\n")
#define die_control() die_reply("421 unable to read controls (#4.3.0)\r\n")
#define die_timeout() die_reply("451 timeout (#4.4.2)\r\n")
#define die_straynewline() die_reply("451 See https://cr.yp.to/docs/smtplf.html.\r\n")

/* ---- client input ---- */

static char inbuf[1024];            /* qmail-smtpd's ssinbuf */
static size_t inpos, inlen;

/* Pending replies go out before every read, as qmail's saferead does: a
 * pipelined batch is answered as far as one read of it reached. */
static void input_refill(void)
{
  out_flush();
  ssize_t r = read_deadline(0, inbuf, sizeof inbuf, deadline_in(timeout_ms()));
  if (r == -1 && errno == ETIMEDOUT) die_timeout();
  if (r <= 0) _exit(1);             /* client EOF: silent */
  inpos = 0;
  inlen = (size_t)r;
}

static char input_byte(void)
{
  if (inpos == inlen) input_refill();
  return inbuf[inpos++];
}

/* ---- control files (qmail's control.c semantics) ---- */

/* 1 read, 0 missing, -1 unreadable */
static int file_read(stralloc *sa, const char *fn)
{
  sa->len = 0;
  return openreadclose(fn, sa, 4096);
}

static size_t strip_trailing_space(const char *s, size_t len)
{
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n')) --len;
  return len;
}

/* First line, trailing blanks stripped, NUL-terminated. */
static int control_line(stralloc *sa, const char *fn)
{
  int r = file_read(sa, fn);
  if (r != 1) return r;
  sa->len = strip_trailing_space(sa->s, byte_chr(sa->s, sa->len, '\n'));
  if (!stralloc_0(sa)) return -1;
  return 1;
}

/* qmail's control_readint: a number on line 1 stored into an int (its low
 * 32 bits, sign and all); a missing file or a non-number keeps the value. */
static int control_int(int *value, const char *fn)
{
  stralloc line = {0};
  int r = control_line(&line, fn);
  unsigned long u;
  if (r == 1 && scan_ulong_wrapping(line.s, &u)) *value = (int)(unsigned int)u;
  stralloc_free(&line);
  return r == -1 ? -1 : 0;
}

/* Lines as consecutive NUL-terminated strings; blank and '#' lines skipped. */
static int control_list(stralloc *list, const char *fn)
{
  stralloc raw = {0};
  int r = file_read(&raw, fn);
  list->len = 0;
  for (size_t pos = 0; r == 1 && pos < raw.len; ) {
    size_t end = pos + byte_chr(raw.s + pos, raw.len - pos, '\n');
    size_t len = strip_trailing_space(raw.s + pos, end - pos);
    if (len && raw.s[pos] != '#')
      if (!stralloc_catb(list, raw.s + pos, len) || !stralloc_0(list)) r = -1;
    pos = end + 1;
  }
  stralloc_free(&raw);
  return r;
}

/* Is s[0..len) one of the list's entries, ignoring case? */
static int list_has(const stralloc *list, const char *s, size_t len)
{
  for (size_t pos = 0; pos < list->len; ) {
    size_t elen = str_len(list->s + pos);
    if (elen == len && !case_diffb(list->s + pos, len, s)) return 1;
    pos += elen + 1;
  }
  return 0;
}

/* ---- session state ---- */

static stralloc greeting = {0};
static int have_rcpthosts;
static stralloc rcpthosts = {0};
static int have_badmailfrom;
static stralloc badmailfrom = {0};

static const char *remoteip, *remotehost, *remoteinfo, *local, *relayclient;

static int have_liphost;
static stralloc liphost = {0};      /* NUL-terminated */

static stralloc helohost = {0};
static const char *fakehelo;        /* the HELO argument, if it differs from remotehost */

static int seen_mail;
static int sender_barred;           /* defined while seen_mail */
static stralloc mailfrom = {0};     /* NUL-terminated */
static stralloc rcptto = {0};       /* "T<addr>\0" per accepted recipient */

static void setup(void)
{
  stralloc me = {0};
  int me_state = control_line(&me, "control/me");
  if (me_state == -1) die_control();
  /* smtpgreeting falls back to me; with neither there is no greeting */
  int r = control_line(&greeting, "control/smtpgreeting");
  if (r == -1) die_control();
  if (r == 0) {
    if (me_state == 0) die_control();
    if (!stralloc_copy(&greeting, &me)) die_nomem();
  }
  --greeting.len;                   /* the NUL control_line added */
  /* localiphost falls back to me */
  have_liphost = control_line(&liphost, "control/localiphost");
  if (have_liphost == -1) die_control();
  if (have_liphost == 0 && me_state == 1) {
    if (!stralloc_copy(&liphost, &me)) die_nomem();
    have_liphost = 1;
  }
  stralloc_free(&me);

  if (control_int(&timeout_seconds, "control/timeoutsmtpd") == -1) die_control();
  if (timeout_seconds <= 0) timeout_seconds = 1;  /* 2147483648 is -2147483648: 1 s */

  have_rcpthosts = control_list(&rcpthosts, "control/rcpthosts");
  if (have_rcpthosts == -1) die_control();
  have_badmailfrom = control_list(&badmailfrom, "control/badmailfrom");
  if (have_badmailfrom == -1) die_control();

  int control_databytes = 0;
  if (control_int(&control_databytes, "control/databytes") == -1) die_control();
  databytes = (unsigned int)control_databytes;
  const char *x = getenv("DATABYTES");
  unsigned long u;
  if (x) { scan_ulong_wrapping(x, &u); databytes = (unsigned int)u; }  /* 2^32 + 10 is 10 */
  if (databytes == UINT_MAX) --databytes;  /* databytes + 1 must not wrap */

  remoteip = getenv("TCPREMOTEIP");
  if (!remoteip) remoteip = "unknown";
  local = getenv("TCPLOCALHOST");
  if (!local) local = getenv("TCPLOCALIP");
  if (!local) local = "unknown";
  remotehost = getenv("TCPREMOTEHOST");
  if (!remotehost) remotehost = "unknown";
  remoteinfo = getenv("TCPREMOTEINFO");
  relayclient = getenv("RELAYCLIENT");
}

static void helo_remember(const char *arg)
{
  if (!stralloc_copys(&helohost, arg) || !stralloc_0(&helohost)) die_nomem();
  fakehelo = case_diffs(remotehost, helohost.s) ? helohost.s : 0;
}

/* ---- addresses ---- */

static stralloc addr = {0};  /* NUL-terminated after addr_parse */

/* qmail's ip_scanbracket: "[a.b.c.d]", each part the low byte of a wrapping
 * number ([127.0.0.257] is 127.0.0.1); its length, 0 if it is none. */
static size_t ip4_scan_bracket(const char *s, unsigned char ip[4])
{
  if (*s != '[') return 0;
  size_t len = 1;
  for (int i = 0; i < 4; ++i) {
    unsigned long u;
    size_t n = scan_ulong_wrapping(s + len, &u);
    if (!n) return 0;
    ip[i] = (unsigned char)u;
    len += n;
    if (i < 3) {
      if (s[len] != '.') return 0;
      ++len;
    }
  }
  return s[len] == ']' ? len + 1 : 0;
}

/* qmail's ipme: 0.0.0.0, or an IPv4 address of an interface that is up */
static int ip4_is_mine(const unsigned char ip[4])
{
  static const unsigned char any[4];
  if (byte_equal(ip, 4, any)) return 1;
  struct ifaddrs *list, *i;
  int mine = 0;
  if (getifaddrs(&list) == -1) return 0;
  for (i = list; i && !mine; i = i->ifa_next)
    if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP))
      mine = byte_equal(&((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4, ip);
  freeifaddrs(list);
  return mine;
}

/* notqmail: box@[IP] naming this machine becomes box@localiphost */
static void addr_localiphost(void)
{
  size_t len = addr.len - 1;
  size_t at = byte_rchr(addr.s, len, '@');
  unsigned char ip[4];
  if (!have_liphost || at >= len) return;
  size_t n = ip4_scan_bracket(addr.s + at + 1, ip);
  if (!n || addr.s[at + 1 + n] || !ip4_is_mine(ip)) return;
  addr.len = at + 1;
  if (!stralloc_catb(&addr, liphost.s, liphost.len - 1) || !stralloc_0(&addr)) die_nomem();
}

/* The address between the first '<' and the next unquoted '>', else after
 * ':' up to a space; '\' escapes a byte, '"' toggles quoting, a source
 * route "@a,@b:" is dropped. 0: too long. */
static int addr_parse(const char *arg)
{
  char end = '>';
  size_t lt = str_chr(arg, '<');
  if (arg[lt]) arg += lt + 1;
  else {
    end = ' ';
    arg += str_chr(arg, ':');
    if (*arg == ':') ++arg;
    while (*arg == ' ') ++arg;
  }
  if (*arg == '@')
    while (*arg)
      if (*arg++ == ':') break;

  addr.len = 0;
  int escaped = 0, quoted = 0;
  for (; *arg; ++arg) {
    if (escaped) escaped = 0;
    else if (*arg == end && !quoted) break;
    else if (*arg == '\\') { escaped = 1; continue; }
    else if (*arg == '"') { quoted = !quoted; continue; }
    if (!stralloc_append(&addr, arg)) die_nomem();
  }
  if (!stralloc_0(&addr)) die_nomem();
  addr_localiphost();
  return addr.len <= ADDR_MAX;
}

static int sender_in_badmailfrom(void)
{
  if (have_badmailfrom != 1) return 0;
  size_t len = addr.len - 1;
  if (list_has(&badmailfrom, addr.s, len)) return 1;
  size_t at = byte_rchr(addr.s, len, '@');
  return at < len && list_has(&badmailfrom, addr.s + at, len - at);
}

/* rcpthosts: the domain itself or any ".suffix" of it; no '@' passes. */
static int recipient_allowed(void)
{
  if (have_rcpthosts != 1) return 1;
  size_t len = addr.len - 1;
  size_t at = byte_rchr(addr.s, len, '@');
  if (at >= len) return 1;
  const char *host = addr.s + at + 1;
  size_t hlen = len - at - 1;
  for (size_t i = 0; i < hlen; ++i)
    if (i == 0 || host[i] == '.')
      if (list_has(&rcpthosts, host + i, hlen - i)) return 1;
  return 0;
}

/* ---- commands ---- */

static void smtp_helo(char *arg)
{
  out_puts("250 "); out_put(greeting.s, greeting.len); out_puts("\r\n");
  seen_mail = 0;
  helo_remember(arg);
}

/* STANDIN_EHLO="STARTTLS,AUTH LOGIN PLAIN": the keywords a patched
 * qmail-smtpd (TLS, SMTP AUTH patches) adds, for testing the proxy's EHLO
 * handling. Unset: notqmail's three lines exactly. */
static void smtp_ehlo(char *arg)
{
  const char *extra = getenv("STANDIN_EHLO");
  out_puts("250-"); out_put(greeting.s, greeting.len);
  out_puts("\r\n250-PIPELINING\r\n");
  while (extra && *extra) {
    size_t n = str_chr(extra, ',');
    out_puts("250-"); out_put(extra, n); out_puts("\r\n");
    extra += n + (extra[n] == ',');
  }
  out_puts("250 8BITMIME\r\n");
  seen_mail = 0;
  helo_remember(arg);
}

/* STANDIN_AUTH="user:password": AUTH PLAIN and LOGIN with the replies of the
 * common qmail SMTP AUTH patch. Unset: 502, as notqmail. */
static int base64_decode(const char *in, stralloc *out)
{
  static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  unsigned long acc = 0;
  int bits = 0;
  out->len = 0;
  for (; *in && *in != '='; ++in) {
    const char *d = strchr(digits, *in);
    if (!d) return 0;
    acc = (acc << 6) | (unsigned long)(d - digits);
    if ((bits += 6) >= 8) {
      char c = (char)(acc >> (bits -= 8));
      if (!stralloc_append(out, &c)) die_nomem();
    }
  }
  return 1;
}

static int auth_line(stralloc *line)
{
  line->len = 0;
  for (char ch; (ch = input_byte()) != '\n'; )
    if (!stralloc_append(line, &ch)) die_nomem();
  if (line->len && line->s[line->len - 1] == '\r') --line->len;
  return stralloc_0(line);
}

static void smtp_auth(char *arg)
{
  const char *secret = getenv("STANDIN_AUTH");
  static stralloc given, line, decoded;
  if (!secret) { out_puts("502 unimplemented (#5.5.1)\r\n"); return; }
  size_t n = str_chr(arg, ' ');
  char *initial = arg[n] ? arg + n + 1 : 0;
  arg[n] = 0;
  given.len = 0;
  if (case_equals(arg, "plain")) {
    if (!initial) { out_puts("334 \r\n"); out_flush(); auth_line(&line); initial = line.s; }
    if (!base64_decode(initial, &decoded)) goto fail;
    /* authzid \0 user \0 password */
    size_t a = byte_chr(decoded.s, decoded.len, 0);
    if (a == decoded.len) goto fail;
    size_t u = a + 1 + byte_chr(decoded.s + a + 1, decoded.len - a - 1, 0);
    if (u == decoded.len) goto fail;
    if (!stralloc_copyb(&given, decoded.s + a + 1, u - a - 1) || !stralloc_append(&given, ":")
        || !stralloc_catb(&given, decoded.s + u + 1, decoded.len - u - 1))
      die_nomem();
  } else if (case_equals(arg, "login")) {
    out_puts("334 VXNlcm5hbWU6\r\n"); out_flush(); auth_line(&line);
    if (!base64_decode(line.s, &decoded) || !stralloc_copy(&given, &decoded)) goto fail;
    out_puts("334 UGFzc3dvcmQ6\r\n"); out_flush(); auth_line(&line);
    if (!base64_decode(line.s, &decoded) || !stralloc_append(&given, ":")
        || !stralloc_cat(&given, &decoded))
      goto fail;
  } else {
    out_puts("504 auth type unimplemented (#5.5.1)\r\n");
    return;
  }
  if (given.len == str_len(secret) && !byte_diff(given.s, given.len, secret)) {
    out_puts("235 ok, go ahead (#2.0.0)\r\n");
    return;
  }
fail:
  out_puts("535 authorization failed (#5.7.0)\r\n");
}

static void smtp_rset(char *arg) { (void)arg; seen_mail = 0; out_puts("250 flushed\r\n"); }
static void smtp_noop(char *arg) { (void)arg; out_puts("250 ok\r\n"); }
static void smtp_vrfy(char *arg) { (void)arg; out_puts("252 send some mail, i'll try my best\r\n"); }
static void smtp_help(char *arg) { (void)arg; out_puts("214 notqmail home page: https://notqmail.org\r\n"); }
static void smtp_unimplemented(char *arg) { (void)arg; out_puts("502 unimplemented (#5.5.1)\r\n"); }

static void __attribute__((noreturn)) smtp_quit(char *arg)
{
  (void)arg;
  out_puts("221 "); out_put(greeting.s, greeting.len); out_puts("\r\n");
  out_flush();
  _exit(0);
}

static void smtp_mail(char *arg)
{
  if (!addr_parse(arg)) { out_puts("555 syntax error (#5.5.4)\r\n"); return; }
  sender_barred = sender_in_badmailfrom();
  seen_mail = 1;
  rcptto.len = 0;
  if (!stralloc_copy(&mailfrom, &addr)) die_nomem();
  out_puts("250 ok\r\n");
}

static void smtp_rcpt(char *arg)
{
  if (!seen_mail) { out_puts("503 MAIL first (#5.5.1)\r\n"); return; }
  if (!addr_parse(arg)) { out_puts("555 syntax error (#5.5.4)\r\n"); return; }
  if (sender_barred) {
    out_puts("553 sorry, your envelope sender is in my badmailfrom list (#5.7.1)\r\n");
    return;
  }
  if (relayclient) {
    --addr.len;
    if (!stralloc_cats(&addr, relayclient) || !stralloc_0(&addr)) die_nomem();
  } else if (!recipient_allowed()) {
    out_puts("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n");
    return;
  }
  if (!stralloc_cats(&rcptto, "T") || !stralloc_cat(&rcptto, &addr)) die_nomem();
  out_puts("250 ok\r\n");
}

/* ---- the queue program (qmail.c semantics, with notqmail's fd 6) ---- */

struct queue {
  pid_t pid;
  int fd_message, fd_envelope, fd_error;
  int failed;                       /* qmail's flagerr: the envelope is withheld */
  stralloc buf;
};

static int fd_move(int to, int from)
{
  if (to == from) return 0;
  if (dup2(from, to) == -1) return -1;
  close(from);
  return 0;
}

/* Pipes for the child's fd 0 (message), fd 1 (envelope), fd 6 (error text). */
static int queue_open(struct queue *q)
{
  int p[6] = { -1, -1, -1, -1, -1, -1 };  /* message, envelope, error: read, write */
  if (pipe(p) == -1 || pipe(p + 2) == -1 || pipe(p + 4) == -1 || (q->pid = fork()) == -1) {
    for (int i = 0; i < 6; ++i) if (p[i] != -1) close(p[i]);
    return -1;
  }
  if (q->pid == 0) {
    /* every other inherited descriptor stays open, as in notqmail; the
     * cwd is already the home directory */
    char *program = getenv("QMAILQUEUE");
    if (!program) program = "bin/qmail-queue";
    char *argv[2] = { program, 0 };
    close(p[1]); close(p[3]); close(p[4]);
    if (fd_move(0, p[0]) == -1 || fd_move(1, p[2]) == -1 || fd_move(6, p[5]) == -1) _exit(120);
    execv(program, argv);
    _exit(120);
  }
  close(p[0]); close(p[2]); close(p[5]);
  q->fd_message = p[1];
  q->fd_envelope = p[3];
  q->fd_error = p[4];
  q->failed = 0;
  q->buf.len = 0;
  return 0;
}

/* Pipe writes have no deadline (nor in qmail); EPIPE only marks failure. */
static void queue_flush(struct queue *q)
{
  if (!q->failed && q->buf.len
      && write_all_deadline(q->fd_message, q->buf.s, q->buf.len, DEADLINE_NONE) == -1)
    q->failed = 1;
  q->buf.len = 0;
}

static void queue_put(struct queue *q, const char *s, size_t len)
{
  if (q->failed) return;
  if (!stralloc_catb(&q->buf, s, len)) die_nomem();
  if (q->buf.len >= 8192) queue_flush(q);
}

static void queue_puts(struct queue *q, const char *s) { queue_put(q, s, str_len(s)); }

/* Outside A-Za-z0-9.@%+/=:-[] a byte becomes '?' (qmail's received.c). */
static void queue_put_safe(struct queue *q, const char *s)
{
  for (; *s; ++s) {
    char ch = *s;
    int safe = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
            || (ch && str_chr(".@%+/=:-[]", ch) < 10);
    queue_put(q, safe ? &ch : "?", 1);
  }
}

static void queue_put_received(struct queue *q)
{
  static const char month[12][4] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  char date[64];
  time_t t = time(0);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(date, sizeof date, "%d %s %d %02d:%02d:%02d -0000\n",
           tm.tm_mday, month[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);

  queue_puts(q, "Received: from ");
  queue_put_safe(q, remotehost);
  if (fakehelo) {
    queue_puts(q, " (HELO ");
    queue_put_safe(q, fakehelo);
    queue_puts(q, ")");
  }
  queue_puts(q, " (");
  if (remoteinfo) {
    queue_put_safe(q, remoteinfo);
    queue_puts(q, "@");
  }
  queue_put_safe(q, remoteip);
  queue_puts(q, ")\n  by ");
  queue_put_safe(q, local);
  queue_puts(q, " with SMTP; ");
  queue_puts(q, date);
}

/* qmail-queue's exit codes as notqmail's qmail_close words them: a first
 * byte 'D' means permanent (554), anything else temporary (451). */
static const struct { int code; const char *text; } queue_exits[] = {
  { 11, "Denvelope address too long for qq (#5.1.3)" },
  { 115, "Denvelope address too long for qq (#5.1.3)" },
  { 31, "Dmail server permanently rejected message (#5.3.0)" },
  { 51, "Zqq out of memory (#4.3.0)" },
  { 52, "Zqq timeout (#4.3.0)" },
  { 53, "Zqq write error or disk full (#4.3.0)" },
  { 0, "Zqq read error (#4.3.0)" },   /* exit 0 after a failed write */
  { 54, "Zqq read error (#4.3.0)" },
  { 55, "Zqq unable to read configuration (#4.3.0)" },
  { 56, "Zqq trouble making network connection (#4.3.0)" },
  { 61, "Zqq trouble in home directory (#4.3.0)" },
  { 62, "Zqq trouble creating files in queue (#4.3.0)" },
  { 63, "Zqq trouble creating files in queue (#4.3.0)" },
  { 64, "Zqq trouble creating files in queue (#4.3.0)" },
  { 65, "Zqq trouble creating files in queue (#4.3.0)" },
  { 66, "Zqq trouble creating files in queue (#4.3.0)" },
  { 71, "Zmail server temporarily rejected message (#4.3.0)" },
  { 72, "Zconnection to mail server timed out (#4.4.1)" },
  { 73, "Zconnection to mail server rejected (#4.4.1)" },
  { 74, "Zcommunication with mail server failed (#4.4.2)" },
  { 81, "Zqq internal bug (#4.3.0)" },
  { 91, "Zqq internal bug (#4.3.0)" },
  { 120, "Zunable to exec qq (#4.3.0)" },
};

/* "" is success */
static const char *queue_verdict(int wstat, int failed, const char *errtext, size_t errlen)
{
  if (WIFSIGNALED(wstat)) return "Zqq crashed (#4.3.0)";
  int code = WEXITSTATUS(wstat);
  if (code == 0 && !failed) return "";
  for (size_t i = 0; i < sizeof queue_exits / sizeof queue_exits[0]; ++i)
    if (queue_exits[i].code == code) return queue_exits[i].text;
  /* notqmail: exit 82 with at least 3 bytes on fd 6 uses that text as is */
  if (code == 82 && errlen > 2) return errtext;
  if (code >= 11 && code <= 40) return "Dqq permanent problem (#5.3.0)";
  return "Zqq temporary problem (#4.3.0)";
}

/* Message done: envelope to fd 1, fd 6 read (to EOF, or as far as
 * qmail_errstr reads: past 255 bytes), then the child's exit. */
static const char *queue_close(struct queue *q)
{
  static char errtext[QQ_ERRTEXT_MAX + 1];
  size_t errlen = 0, seen = 0;

  queue_flush(q);
  close(q->fd_message);
  if (!q->failed) {
    stralloc envelope = {0};
    if (!stralloc_cats(&envelope, "F") || !stralloc_cat(&envelope, &mailfrom)
        || !stralloc_cat(&envelope, &rcptto) || !stralloc_0(&envelope)) die_nomem();
    if (write_all_deadline(q->fd_envelope, envelope.s, envelope.len, DEADLINE_NONE) == -1)
      q->failed = 1;
    stralloc_free(&envelope);
  }
  close(q->fd_envelope);

  while (seen <= QQ_ERRTEXT_MAX) {
    char chunk[1024];
    ssize_t r = read(q->fd_error, chunk, sizeof chunk);
    if (r == -1 && errno == EINTR) continue;
    if (r <= 0) break;
    seen += (size_t)r;
    size_t keep = (size_t)r;
    if (keep > QQ_ERRTEXT_MAX - errlen) keep = QQ_ERRTEXT_MAX - errlen;
    byte_copy(errtext + errlen, keep, chunk);
    errlen += keep;
  }
  errtext[errlen] = 0;
  close(q->fd_error);

  int wstat;
  pid_t r;
  do r = waitpid(q->pid, &wstat, 0); while (r == -1 && errno == EINTR);
  if (r != q->pid) return "Zqq waitpid surprise (#4.3.0)";
  return queue_verdict(wstat, q->failed, errtext, errlen);
}

/* ---- DATA ---- */

/* Counts header lines starting with "Received" or "Delivered" (any case)
 * until the first empty line; sees the bytes as the client sent them. */
struct hop_count {
  int in_header;
  size_t pos;                       /* bytes since the last LF */
  char start[9];                    /* the line's first bytes */
  unsigned long hops;
};

static void hop_count_byte(struct hop_count *h, char ch)
{
  if (!h->in_header) return;
  if (h->pos < sizeof h->start) h->start[h->pos] = ch;
  ++h->pos;
  if (h->pos == 8 && case_equalb(h->start, 8, "received")) ++h->hops;
  if (h->pos == 9 && case_equalb(h->start, 9, "delivered")) ++h->hops;
  if (ch == '\n') {
    if (h->pos == 2 && h->start[0] == '\r') h->in_header = 0;
    h->pos = 0;
  }
}

static unsigned int bytes_to_overflow;  /* counts down; 0 after overflow */

static void message_put(struct queue *q, const char *ch)
{
  if (bytes_to_overflow)
    if (!--bytes_to_overflow) q->failed = 1;
  queue_put(q, ch, 1);
}

/* Copies the body up to CRLF.CRLF: CRLF becomes LF, a leading dot goes,
 * bare CR, NUL and 8-bit bytes pass; a bare LF anywhere is fatal. */
static unsigned long message_copy(struct queue *q)
{
  enum { MIDDLE, LINE_START, DOT, DOT_CR, CR } state = LINE_START;
  struct hop_count h = { 1, 0, "", 0 };
  for (;;) {
    char ch = input_byte();
    hop_count_byte(&h, ch);
    /* only CRLF ends a line */
    if (ch == '\n' && state != CR && state != DOT_CR) die_straynewline();
    switch (state) {
      case MIDDLE:
        if (ch == '\r') { state = CR; continue; }
        break;
      case LINE_START:
        if (ch == '.') { state = DOT; continue; }
        if (ch == '\r') { state = CR; continue; }
        state = MIDDLE;
        break;
      case DOT:
        if (ch == '\r') { state = DOT_CR; continue; }
        state = MIDDLE;
        break;
      case DOT_CR:
        if (ch == '\n') return h.hops;
        /* ".<CR>x" at a line start is not unstuffed: qmail keeps the dot */
        message_put(q, ".");
        message_put(q, "\r");
        if (ch == '\r') { state = CR; continue; }
        state = MIDDLE;
        break;
      case CR:
        if (ch == '\n') { state = LINE_START; break; }
        message_put(q, "\r");       /* the earlier CR was bare */
        if (ch == '\r') continue;   /* and this one may start a CRLF */
        state = MIDDLE;
        break;
    }
    message_put(q, &ch);
  }
}

static void smtp_data(char *arg)
{
  (void)arg;
  static struct queue q;            /* static: its buffer is reused */
  if (!seen_mail) { out_puts("503 MAIL first (#5.5.1)\r\n"); return; }
  if (!rcptto.len) { out_puts("503 RCPT first (#5.5.1)\r\n"); return; }
  seen_mail = 0;
  bytes_to_overflow = databytes ? databytes + 1 : 0;
  if (queue_open(&q) == -1) { out_puts("451 qqt failure (#4.3.0)\r\n"); return; }
  out_puts("354 go ahead\r\n");

  queue_put_received(&q);
  int too_many_hops = message_copy(&q) >= MAXHOPS;
  if (too_many_hops) q.failed = 1;
  const char *verdict = queue_close(&q);

  if (!*verdict) {
    char num[FMT_ULONG];
    out_puts("250 ok ");
    out_put(num, fmt_ulong(num, (unsigned long)time(0)));
    out_puts(" qp ");
    out_put(num, fmt_ulong(num, (unsigned long)q.pid));
    out_puts("\r\n");
  } else if (too_many_hops)
    out_puts("554 too many hops, this message is looping (#5.4.6)\r\n");
  else if (databytes && !bytes_to_overflow)
    out_puts("552 sorry, that message size exceeds my databytes limit (#5.3.4)\r\n");
  else {
    out_puts(*verdict == 'D' ? "554 " : "451 ");
    out_puts(verdict + 1);          /* up to a NUL, as notqmail's out() */
    out_puts("\r\n");
  }
}

/* ---- the command loop ---- */

struct command {
  const char *verb;
  void (*run)(char *arg);
  int flush_after;                  /* MAIL, RCPT, RSET wait for the batch to end */
};

static const struct command commands[] = {
  { "rcpt", smtp_rcpt, 0 },
  { "mail", smtp_mail, 0 },
  { "data", smtp_data, 1 },
  { "quit", smtp_quit, 1 },
  { "helo", smtp_helo, 1 },
  { "ehlo", smtp_ehlo, 1 },
  { "rset", smtp_rset, 0 },
  { "help", smtp_help, 1 },
  { "noop", smtp_noop, 1 },
  { "vrfy", smtp_vrfy, 1 },
  { "auth", smtp_auth, 1 },
  { 0, smtp_unimplemented, 1 },
};

static void __attribute__((noreturn)) command_loop(void)
{
  stralloc line = {0};
  for (;;) {
    /* a line ends at LF, with no length limit; one CR before it goes */
    line.len = 0;
    for (char ch; (ch = input_byte()) != '\n'; )
      if (!stralloc_append(&line, &ch)) die_nomem();
    if (line.len && line.s[line.len - 1] == '\r') --line.len;
    if (!stralloc_0(&line)) die_nomem();

    /* from here on the line is a C string: a NUL cuts it */
    size_t space = str_chr(line.s, ' ');
    char *arg = line.s + space;
    while (*arg == ' ') ++arg;
    line.s[space] = 0;

    const struct command *c = commands;
    while (c->verb && !case_equals(c->verb, line.s)) ++c;
    c->run(arg);
    if (c->flush_after) out_flush();
  }
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);  /* inherited by the queue program, as in qmail */
  const char *home = getenv("STANDIN_HOME");
  if (home && chdir(home) == -1) die_control();
  setup();
  helo_remember(remotehost);
  out_puts("220 "); out_put(greeting.s, greeting.len); out_puts(" ESMTP\r\n");
  out_flush();
  command_loop();
}
