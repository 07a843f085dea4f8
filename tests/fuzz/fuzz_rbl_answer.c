/* rblsmtpd-plus's reading of a DNS answer (rbl_answer_read) on any packet.
 * The first input byte picks the question type (even: A, odd: TXT), the
 * rest is the packet as a server sent it. Against a walk of the answer
 * section done here with lib/dns_answer:
 *   - a packet dns_answer calls malformed (a record past the end, fewer
 *     records than announced), an IN A record not 4 bytes long, or an IN
 *     TXT record whose strings do not fit it exactly is always -1, and any
 *     other packet is read (0): nothing a broken server sends is taken for
 *     "not listed";
 *   - A: the result is whole addresses, sorted, and as a multiset exactly
 *     the IN A records of the answer section;
 *   - TXT: the result is the IN TXT records' strings joined: exactly as
 *     long as they are together, every byte printable.
 * Nothing is read outside the packet: ASan watches our code, and libowfat
 * (not instrumented) meets an unmapped page right after the packet's last
 * byte. */
#include "fuzz.h"
#include "dns_answer.h"
#include "rbl_lookup.h"
#include <string.h>

struct expected {
  int malformed;
  unsigned int text;        /* IN TXT: the strings' bytes together */
  stralloc a;               /* IN A: 4 bytes each, in packet order */
};

/* The strings of one TXT RDATA: their length together, or -1 when the
 * last one does not end exactly at the end of the record. */
static long txt_strings(const char *data, unsigned int len)
{
  unsigned int i = 0;
  long text = 0;
  while (i < len) {
    unsigned int n = (unsigned char)data[i];
    text += n;
    i += 1 + n;
  }
  return i == len ? text : -1;
}

static void walk(const char *buf, unsigned int len, struct expected *e)
{
  struct dns_answer a;
  struct dns_record r;
  int k;

  e->malformed = 1;
  e->text = 0;
  e->a.len = 0;
  if (!dns_answer_start(&a, buf, len)) return;
  while ((k = dns_answer_next(&a, &r)) == 1) {
    CHECK(r.data <= len && r.datalen <= len - r.data);
    if (memcmp(r.rclass, DNS_C_IN, 2)) continue;
    if (!memcmp(r.type, DNS_T_A, 2)) {
      if (r.datalen != 4) return;
      CHECK(stralloc_catb(&e->a, buf + r.data, 4));
    } else if (!memcmp(r.type, DNS_T_TXT, 2)) {
      long t = txt_strings(buf + r.data, r.datalen);
      if (t < 0) return;
      e->text += (unsigned int)t;
    }
  }
  if (k == 0) e->malformed = 0;
}

static int ip4_cmp(const void *x, const void *y) { return memcmp(x, y, 4); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct expected e;
  static stralloc result;
  if (size < 1 || size - 1 > FUZZ_GUARD_MAX) return 0;
  int txt = data[0] & 1;
  const char *qtype = txt ? DNS_T_TXT : DNS_T_A;
  unsigned int len = (unsigned int)(size - 1);
  const char *packet = fuzz_guarded(data + 1, len);

  /* something in it from an earlier run: it must not show through */
  CHECK(stralloc_copys(&result, "\x7f\x01\x02\x03stale"));
  int r = rbl_answer_read(qtype, packet, len, &result);
  walk(packet, len, &e);

  CHECK(r == 0 || r == -1);
  CHECK((r == -1) == e.malformed);
  if (r == -1) {
    CHECK(result.len == 0);
    return 0;
  }
  if (!txt) {
    CHECK(result.len % 4 == 0);
    for (unsigned int i = 4; i < result.len; i += 4)
      CHECK(memcmp(result.s + i - 4, result.s + i, 4) <= 0);
    CHECK(result.len == e.a.len);
    if (e.a.len) qsort(e.a.s, e.a.len / 4, 4, ip4_cmp);
    CHECK(!result.len || !memcmp(result.s, e.a.s, result.len));
  } else {
    CHECK(result.len == e.text);   /* no longer than the strings: exactly them */
    for (unsigned int i = 0; i < result.len; ++i)
      CHECK(result.s[i] >= 32 && result.s[i] <= 126);
  }
  return 0;
}
