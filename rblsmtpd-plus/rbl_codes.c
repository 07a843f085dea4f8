#include "rbl_codes.h"
#include "scan.h"

static uint32_t addr_of(const char ip[4])
{
  const unsigned char *u = (const unsigned char *)ip;
  return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) | u[3];
}

int rbl_code_is_loopback(const char ip[4]) { return (unsigned char)ip[0] == 127; }

int rbl_code_is_error(const char ip[4])
{
  uint32_t a = addr_of(ip);
  return a >= 0x7ffffffcu && a <= 0x7fffffffu;
}

/* 1 to max decimal digits at s (of len bytes) and no more: how many, 0 if
 * none or too many. */
static unsigned int digits_at(const char *s, unsigned int len, unsigned int max, unsigned long *v)
{
  unsigned int n = (unsigned int)scan_ulongn(s, len < max ? len : max, v);
  if (n < len && s[n] >= '0' && s[n] <= '9') return 0;
  return n;
}

/* A strict dotted quad at s: the bytes used, 0 if none. */
static unsigned int scan_quad(const char *s, unsigned int len, uint32_t *out)
{
  unsigned int pos = 0;
  uint32_t a = 0;
  for (int part = 0; part < 4; ++part) {
    unsigned long v;
    if (part) {
      if (pos >= len || s[pos] != '.') return 0;
      ++pos;
    }
    unsigned int digits = digits_at(s + pos, len - pos, 3, &v);
    if (!digits || v > 255) return 0;
    pos += digits;
    a = (a << 8) | (uint32_t)v;
  }
  *out = a;
  return pos;
}

static int in_loopback(uint32_t a) { return (a >> 24) == 127; }

int rbl_codes_parse(struct rbl_codes *c, const char *s, unsigned int len)
{
  unsigned int pos = 0;
  c->n = 0;
  if (!len) return 0;
  for (;;) {
    uint32_t lo, hi;
    unsigned int k = scan_quad(s + pos, len - pos, &lo);
    if (!k) return 0;
    pos += k;
    hi = lo;
    if (pos < len && s[pos] == '-') {
      ++pos;
      k = scan_quad(s + pos, len - pos, &hi);
      if (!k || hi < lo) return 0;
      pos += k;
    } else if (pos < len && s[pos] == '/') {
      unsigned long bits;
      ++pos;
      unsigned int digits = digits_at(s + pos, len - pos, 2, &bits);
      if (!digits || bits < 8 || bits > 32) return 0;
      pos += digits;
      uint32_t mask = bits == 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
      if (lo & ~mask) return 0;   /* 127.0.0.1/8: say what you mean */
      hi = lo | ~mask;
    }
    if (!in_loopback(lo) || !in_loopback(hi)) return 0;
    if (c->n == RBL_CODES_MAX) return 0;
    c->lo[c->n] = lo;
    c->hi[c->n] = hi;
    ++c->n;
    if (pos == len) return 1;
    if (s[pos] != ',') return 0;
    ++pos;
  }
}

int rbl_codes_match(const struct rbl_codes *c, const char ip[4])
{
  if (!rbl_code_is_loopback(ip)) return 0;
  if (!c->n) return !rbl_code_is_error(ip);
  uint32_t a = addr_of(ip);
  for (unsigned int i = 0; i < c->n; ++i)
    if (a >= c->lo[i] && a <= c->hi[i]) return 1;
  return 0;
}
