/* The DATA relay's end-of-data rule against qmail-smtpd's own (a model of
 * notqmail's blast(), in this file): fed in pieces of every size as a
 * client's reads arrive, the relay gives prog exactly the client's bytes, and
 * ends the message exactly where qmail-smtpd does, or refuses a bare CR/LF
 * before qmail-smtpd could end it anywhere else. The first input byte picks
 * the piece sizes. */
#include "fuzz.h"
#include "data_scan.h"
#include <string.h>

/* qmail-smtpd's blast(): the index after the terminating LF, or -1 when it
 * does not end (or refuses a bare LF first: -2). */
static long qmail_end(const unsigned char *s, size_t n)
{
  int state = 1;   /* 0 in a line, 1 after CRLF, 2 CRLF ".", 3 CRLF ".\r", 4 after CR */
  for (size_t i = 0; i < n; ++i) {
    unsigned char ch = s[i];
    switch (state) {
      case 0: if (ch == '\n') return -2; if (ch == '\r') state = 4; break;
      case 1: if (ch == '\n') return -2; state = ch == '.' ? 2 : ch == '\r' ? 4 : 0; break;
      case 2: if (ch == '\n') return -2; state = ch == '\r' ? 3 : 0; break;
      case 3: if (ch == '\n') return (long)i + 1; state = ch == '\r' ? 4 : 0; break;
      case 4: if (ch == '\n') state = 1; else if (ch != '\r') state = 0; break;
    }
  }
  return -1;
}

/* A CR or LF in s[0..n) that is not part of CRLF. */
static int has_bare(const unsigned char *s, size_t n)
{
  for (size_t i = 0; i < n; ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return 1;
    if (s[i] == '\r' && i + 1 < n && s[i + 1] != '\n') return 1;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1) return 0;
  unsigned seed = data[0];
  const unsigned char *in = data + 1;
  size_t n = size - 1, arrived = 0, start = 0;
  static unsigned char buf[1 << 16], forwarded[1 << 16];
  size_t fwd = 0;
  if (n > sizeof buf) return 0;
  enum data_state st = D_BOL;
  enum { ENDED, REFUSED, EOF_ } outcome;
  for (;;) {
    if (start == arrived) {              /* nothing unread: the next read */
      if (arrived == n) { outcome = EOF_; break; }
      size_t piece = 1 + (seed = seed * 1103515245u + 12345u) % 7;
      if (seed & 0x100) piece = n - arrived;   /* sometimes all the rest */
      if (piece > n - arrived) piece = n - arrived;
      memcpy(buf + arrived, in + arrived, piece);
      arrived += piece;
      continue;
    }
    struct data_step step = data_step(&st, (const char *)buf + start, arrived - start);
    if (step.result == SCAN_BARE) { outcome = REFUSED; break; }
    CHECK(step.forward <= step.consume && step.consume <= arrived - start);
    memcpy(forwarded + fwd, buf + start, step.forward);
    fwd += step.forward;
    start += step.consume;
    if (step.result == SCAN_END) { outcome = ENDED; break; }
    if (start < arrived) {               /* held back: wait for more */
      if (arrived == n) { outcome = EOF_; break; }
      size_t piece = 1 + (seed = seed * 1103515245u + 12345u) % 3;
      if (piece > n - arrived) piece = n - arrived;
      memcpy(buf + arrived, in + arrived, piece);
      arrived += piece;
    }
  }
  /* prog is only ever given the client's own bytes, in order */
  CHECK(fwd <= n && !memcmp(forwarded, in, fwd));
  long q = qmail_end(in, n);
  if (outcome == ENDED) {
    /* prog gets forwarded + ".\r\n": exactly the client's bytes up to where
     * qmail-smtpd ends the message */
    CHECK(start == fwd + 3 && !memcmp(in + fwd, ".\r\n", 3));
    CHECK(q == (long)start);
  } else {
    /* prog never got an end: qmail-smtpd must not find one in what it got */
    long qf = qmail_end(forwarded, fwd);
    CHECK(qf < 0);
    if (outcome == REFUSED) {
      /* a real bare CR or LF, before any end qmail-smtpd could find */
      CHECK(has_bare(in, arrived));
      CHECK(q < 0 || q > (long)start);
    } else {
      CHECK(q == -1);   /* all of it read, no end, nothing bare */
    }
  }
  return 0;
}
