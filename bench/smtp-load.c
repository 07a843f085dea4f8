/* smtp-load: drive N complete SMTP sessions at concurrency C against
 * 127.0.0.1:PORT and print one line per session: "latency_us ok code".
 *
 *   smtp-load [ -t ] PORT N C BODYBYTES [ rcpt ]
 *
 * A session: connect, 220, EHLO (whole multi-line reply), ID example.com,
 * MAIL, RCPT, DATA, 354, BODYBYTES of message (From and Subject, then lines
 * of 78 bytes) and ".", 250, QUIT, 221, close.
 * With -t, STARTTLS after the first EHLO: 220, a TLS handshake (OpenSSL,
 * TLS 1.2 or later, the server's certificate not verified, SNI
 * standin.example), EHLO again, and the rest of the session over TLS.
 * With "rcpt", each session ends after its RCPT, whatever the reply (MAIL,
 * RCPT, QUIT; ok is 1 when QUIT got its 221): a run that only primes
 * per-triplet state (greylisting) before the measured one.
 *
 * ok is 1 when MAIL, RCPT, DATA and the end of data were accepted (the ID
 * reply is not checked: a chain without qmail-idcheck does not know the
 * command); otherwise the step that failed: 2 connect, 3 greeting, 4 EHLO,
 * 5 ID, 6 MAIL, 7 RCPT, 8 DATA, 9 end of data, 10 QUIT, 11 STARTTLS,
 * 12 TLS handshake, 13 EHLO after STARTTLS. code is the reply code that step
 * got: 0 when there was none (the connection closed, a read or write failed
 * or ran out of time). Each of the C threads runs sessions one after another
 * until N have started; every read and write has a 30 s deadline. Lean on
 * purpose: the client shares the machine with the chain it measures. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int port, nsessions, bodybytes, starttls, rcpt_only;
static atomic_int next;
static long *lat_us;
static char *okv;
static short *codev;
static char *message;          /* headers + body + ".\r\n" */
static size_t message_len;
static SSL_CTX *tls_ctx;

static long now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

struct conn { int fd; SSL *ssl; char buf[4096]; size_t len; };

/* The socket's own deadlines (SO_RCVTIMEO, SO_SNDTIMEO) bound every call. */
static ssize_t conn_read(struct conn *c, char *buf, size_t len)
{
  if (!c->ssl) return read(c->fd, buf, len);
  int n = SSL_read(c->ssl, buf, (int)len);
  return n > 0 ? n : -1;
}

static int say(struct conn *c, const char *s, size_t len)
{
  while (len) {
    ssize_t n = c->ssl ? SSL_write(c->ssl, s, (int)len) : write(c->fd, s, len);
    if (n <= 0) return -1;
    s += n;
    len -= (size_t)n;
  }
  return 0;
}

/* The next whole reply (through its last line): its code, or 0. */
static int reply(struct conn *c)
{
  for (;;) {
    /* a complete last line: "ddd " ... "\n" */
    size_t start = 0;
    for (size_t i = 0; i < c->len; ++i) {
      if (c->buf[i] != '\n') continue;
      if (i - start >= 3 && (i - start == 3 || c->buf[start + 3] != '-')) {
        int code = atoi(c->buf + start);
        memmove(c->buf, c->buf + i + 1, c->len - i - 1);
        c->len -= i + 1;
        return code;
      }
      start = i + 1;
    }
    if (c->len == sizeof c->buf) {        /* drop complete continuation lines */
      memmove(c->buf, c->buf + start, c->len - start);
      c->len -= start;
      if (c->len == sizeof c->buf) return 0;
    }
    ssize_t n = conn_read(c, c->buf + c->len, sizeof c->buf - c->len);
    if (n <= 0) return 0;
    c->len += (size_t)n;
  }
}

/* Starts TLS on the connection (after the 220 to STARTTLS): 1, or 0. */
static int tls_start(struct conn *c)
{
  if (c->len) return 0;       /* bytes after the 220 in the clear: refuse them */
  c->ssl = SSL_new(tls_ctx);
  if (!c->ssl) return 0;
  SSL_set_tlsext_host_name(c->ssl, "standin.example");
  SSL_set_fd(c->ssl, c->fd);
  return SSL_connect(c->ssl) == 1;
}

#define CMD(c, s) say(c, s, sizeof s - 1)
/* one step: the command, then its reply's code in *code; true when wanted */
#define STEP(cmd, want) (*code = ((cmd) == 0 ? reply(&c) : 0), (want))

static int session(int i, int *code)
{
  struct conn c;
  c.len = 0;
  c.ssl = 0;
  *code = 0;
  c.fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c.fd < 0) return 2;
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct timeval tv = { 30, 0 };
  setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons((unsigned short)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char mail[128], rcpt[128];
  int ml = snprintf(mail, sizeof mail, "MAIL FROM:<s%d@example.com>\r\n", i);
  int rl = snprintf(rcpt, sizeof rcpt, "RCPT TO:<r%d@example.org>\r\n", i);
  int ok = 2;
  if (connect(c.fd, (struct sockaddr *)&sin, sizeof sin) != 0) goto done;
  ok = 3;
  if ((*code = reply(&c)) != 220) goto done;
  ok = 4;
  if (!STEP(CMD(&c, "EHLO client.example\r\n"), *code == 250)) goto done;
  if (starttls) {
    ok = 11;
    if (!STEP(CMD(&c, "STARTTLS\r\n"), *code == 220)) goto done;
    ok = 12;
    if (!tls_start(&c)) goto done;
    ok = 13;
    if (!STEP(CMD(&c, "EHLO client.example\r\n"), *code == 250)) goto done;
  }
  ok = 5;
  if (!STEP(CMD(&c, "ID example.com\r\n"), *code > 0)) goto done;
  ok = 6;
  if (!STEP(say(&c, mail, (size_t)ml), *code / 100 == 2)) goto done;
  ok = 7;
  if (rcpt_only) {
    if (say(&c, rcpt, (size_t)rl) != 0 || reply(&c) <= 0) goto done;
    ok = 10;
    if (!STEP(CMD(&c, "QUIT\r\n"), *code == 221)) goto done;
    ok = 1;
    *code = 0;
    goto done;
  }
  if (!STEP(say(&c, rcpt, (size_t)rl), *code / 100 == 2)) goto done;
  ok = 8;
  if (!STEP(CMD(&c, "DATA\r\n"), *code == 354)) goto done;
  ok = 9;
  if (!STEP(say(&c, message, message_len), *code / 100 == 2)) goto done;
  ok = 10;
  if (!STEP(CMD(&c, "QUIT\r\n"), *code == 221)) goto done;
  ok = 1;
  *code = 0;
done:
  if (c.ssl) {
    if (ok == 1) SSL_shutdown(c.ssl);     /* close_notify, not waited for */
    SSL_free(c.ssl);
    ERR_clear_error();
  }
  close(c.fd);
  return ok;
}

static void *runner(void *arg)
{
  (void)arg;
  for (;;) {
    int i = atomic_fetch_add(&next, 1);
    if (i >= nsessions) return 0;
    long t0 = now_us();
    int code;
    okv[i] = (char)session(i, &code);
    codev[i] = (short)code;
    lat_us[i] = now_us() - t0;
  }
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "-t") == 0) {
    starttls = 1;
    ++argv;
    --argc;
  }
  if (argc == 6 && !strcmp(argv[5], "rcpt")) {
    rcpt_only = 1;
    --argc;
  }
  if (argc != 5) {
    fprintf(stderr, "usage: smtp-load [ -t ] PORT N C BODYBYTES [ rcpt ]\n");
    return 100;
  }
  port = atoi(argv[1]);
  nsessions = atoi(argv[2]);
  int conc = atoi(argv[3]);
  bodybytes = atoi(argv[4]);
  if (port <= 0 || nsessions <= 0 || conc <= 0 || bodybytes < 0) return 100;
  if (starttls) {
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx || !SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION)) return 111;
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, 0);
    SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);  /* a full handshake each time */
  }

  /* the message: From (the sender's domain: DMARC passes for the reference
   * policy) and Subject, then lines of 76 characters + CRLF */
  message = malloc((size_t)bodybytes + 256);
  lat_us = calloc((size_t)nsessions, sizeof *lat_us);
  okv = calloc((size_t)nsessions, 1);
  codev = calloc((size_t)nsessions, sizeof *codev);
  if (!message || !lat_us || !okv || !codev) return 111;
  size_t p = (size_t)sprintf(message, "From: bench@example.com\r\nSubject: bench\r\n\r\n");
  while ((int)p < bodybytes) {
    size_t room = (size_t)bodybytes - p;
    size_t n = room < 78 ? room : 78;
    if (n < 3) { memcpy(message + p, "x\r\n", 3); p += 3; break; }
    memset(message + p, 'x', n - 2);
    memcpy(message + p + n - 2, "\r\n", 2);
    p += n;
  }
  memcpy(message + p, ".\r\n", 3);
  message_len = p + 3;

  pthread_t *t = calloc((size_t)conc, sizeof *t);
  if (!t) return 111;
  long t0 = now_us();
  for (int i = 0; i < conc; ++i) pthread_create(&t[i], 0, runner, 0);
  for (int i = 0; i < conc; ++i) pthread_join(t[i], 0);
  long wall = now_us() - t0;
  printf("wall_us %ld\n", wall);
  for (int i = 0; i < nsessions; ++i) printf("%ld %d %d\n", lat_us[i], okv[i], codev[i]);
  return 0;
}
