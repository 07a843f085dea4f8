/* smtp-load: drive N complete SMTP sessions at concurrency C against
 * 127.0.0.1:PORT and print one line per session: "latency_us ok".
 *
 *   smtp-load PORT N C BODYBYTES [rcpt]
 *
 * With "rcpt", each session ends after its RCPT, whatever the reply (MAIL,
 * RCPT, QUIT): bench/sessions primes the stateful rows so, one triplet
 * per session, the same work whether RCPT is greylisted or not.
 * A session: connect, 220, EHLO (whole multi-line reply), ID example.com,
 * MAIL, RCPT, DATA, 354, BODYBYTES of message and ".", 250, QUIT, 221, close.
 * ok is 1 when MAIL, RCPT, DATA and the end of data were accepted (the ID
 * reply is not checked: the bare chain does not know the command); otherwise
 * the step that failed: 2 connect, 3 greeting, 4 EHLO, 5 ID, 6 MAIL, 7 RCPT,
 * 8 DATA, 9 end of data, 10 QUIT. Each of
 * the C threads runs sessions one after another until N have started; every
 * read has a 30 s deadline. Lean on purpose: the client shares the machine
 * with the chain it measures. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, nsessions, bodybytes, rcpt_only;
static atomic_int next;
static long *lat_us;
static char *okv;
static char *message;          /* headers + body + ".\r\n" */
static size_t message_len;

static long now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

struct conn { int fd; char buf[4096]; size_t len; };

/* The next whole reply (through its last line): its code, or -1. */
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
      if (c->len == sizeof c->buf) return -1;
    }
    struct pollfd p = { c->fd, POLLIN, 0 };
    if (poll(&p, 1, 30000) <= 0) return -1;
    ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    if (n <= 0) return -1;
    c->len += (size_t)n;
  }
}

static int say(struct conn *c, const char *s, size_t len)
{
  while (len) {
    ssize_t n = write(c->fd, s, len);
    if (n <= 0) return -1;
    s += n;
    len -= (size_t)n;
  }
  return 0;
}

#define CMD(c, s) say(c, s, sizeof s - 1)

static int session(int i)
{
  struct conn c;
  c.len = 0;
  c.fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c.fd < 0) return 0;
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons((unsigned short)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char mail[128], rcpt[128];
  int ml = snprintf(mail, sizeof mail, "MAIL FROM:<s%d@example.com>\r\n", i);
  int rl = snprintf(rcpt, sizeof rcpt, "RCPT TO:<r%d@example.org>\r\n", i);
  /* ok: 1, else the step that failed (2 connect .. 10 QUIT) */
  int ok = 2;
  if (rcpt_only) {
    if (connect(c.fd, (struct sockaddr *)&sin, sizeof sin) == 0 && ++ok
        && reply(&c) == 220 && ++ok
        && CMD(&c, "EHLO client.example\r\n") == 0 && reply(&c) == 250 && ++ok
        && CMD(&c, "ID example.com\r\n") == 0 && reply(&c) > 0 && ++ok
        && say(&c, mail, (size_t)ml) == 0 && reply(&c) / 100 == 2 && ++ok
        && say(&c, rcpt, (size_t)rl) == 0 && reply(&c) > 0 && (ok = 10)
        && CMD(&c, "QUIT\r\n") == 0 && reply(&c) == 221)
      ok = 1;
    close(c.fd);
    return ok;
  }
  if (connect(c.fd, (struct sockaddr *)&sin, sizeof sin) == 0 && ++ok
      && reply(&c) == 220 && ++ok
      && CMD(&c, "EHLO client.example\r\n") == 0 && reply(&c) == 250 && ++ok
      && CMD(&c, "ID example.com\r\n") == 0 && reply(&c) > 0 && ++ok
      && say(&c, mail, (size_t)ml) == 0 && reply(&c) / 100 == 2 && ++ok
      && say(&c, rcpt, (size_t)rl) == 0 && reply(&c) / 100 == 2 && ++ok
      && CMD(&c, "DATA\r\n") == 0 && reply(&c) == 354 && ++ok
      && say(&c, message, message_len) == 0 && reply(&c) / 100 == 2 && ++ok
      && CMD(&c, "QUIT\r\n") == 0 && reply(&c) == 221)
    ok = 1;
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
    okv[i] = (char)session(i);
    lat_us[i] = now_us() - t0;
  }
}

int main(int argc, char **argv)
{
  if (argc != 5 && !(argc == 6 && !strcmp(argv[5], "rcpt"))) {
    fprintf(stderr, "usage: smtp-load PORT N C BODYBYTES [rcpt]\n");
    return 100;
  }
  rcpt_only = argc == 6;
  port = atoi(argv[1]);
  nsessions = atoi(argv[2]);
  int conc = atoi(argv[3]);
  bodybytes = atoi(argv[4]);
  if (port <= 0 || nsessions <= 0 || conc <= 0 || bodybytes < 0) return 100;

  /* the message: a Subject, then lines of 76 characters + CRLF */
  message = malloc((size_t)bodybytes + 256);
  lat_us = calloc((size_t)nsessions, sizeof *lat_us);
  okv = calloc((size_t)nsessions, 1);
  if (!message || !lat_us || !okv) return 111;
  size_t p = (size_t)sprintf(message, "Subject: bench\r\n\r\n");
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
  for (int i = 0; i < nsessions; ++i) printf("%ld %d\n", lat_us[i], okv[i]);
  return 0;
}
