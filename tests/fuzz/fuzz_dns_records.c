/* What idcheck.dns makes of an answer (lib/dns_records) on any packet.
 * The first input byte picks the type asked for (A, AAAA, MX, PTR, TXT:
 * its value mod 5) and, with its top bit, where the name asked for comes
 * from: the next byte's count of bytes as text (dns_name_wire), else the
 * packet's question. The rest is the packet as a server sent it, placed
 * against an unmapped page (libowfat is not instrumented). Properties:
 *   - names: text is refused exactly when DNS cannot carry it (its own
 *     count here), else text -> wire -> text gives the text back (without
 *     its one trailing dot); for every name the packet holds whose labels have no
 *     '.' byte, wire -> text -> wire gives the name back byte for byte;
 *   - the walk: every name it returns (MX exchange, PTR target, the owner
 *     it ended at) is, as text, a name the packet holds (or the one asked
 *     for); a packet whose answer section is malformed is always
 *     DNS_WALK_MALFORMED; CNAMEs followed are bounded (DNS_WALK_LOOP just
 *     past DNS_ALIASES_MAX); on DNS_WALK_OK the records are as many as the
 *     IN records of that type the final owner has, A 4 bytes, AAAA 16, TXT
 *     strings that fit; an end with no records is a name with no alias;
 *     DNS_WALK_AGAIN only after an alias, in a NOERROR answer. */
#include "fuzz.h"
#include "dns.h"
#include "dns_answer.h"
#include "dns_records.h"

#define HELD_MAX 512

static const char *const qtypes[5] = { DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_PTR, DNS_T_TXT };

/* Names the packet holds: the question's, and in the answer section each
 * record's owner and the names its data may hold (CNAME, PTR, MX). */
struct held {
  char *name[HELD_MAX];
  int n;
  int malformed;              /* the answer section, by dns_answer */
  struct dns_record rec[HELD_MAX];
  int nrec;
};

static void held_add(struct held *h, const char *buf, unsigned int len, unsigned int pos)
{
  char *dn = 0;
  if (h->n < HELD_MAX && pos < len && dns_packet_getname(buf, len, pos, &dn)) h->name[h->n++] = dn;
}

static void held_read(struct held *h, const char *buf, unsigned int len)
{
  struct dns_answer a;
  struct dns_record r;
  int k = -1;
  h->n = h->nrec = 0;
  held_add(h, buf, len, 12);
  if (dns_answer_start(&a, buf, len))
    while ((k = dns_answer_next(&a, &r)) == 1) {
      CHECK(r.data <= len && r.datalen <= len - r.data);
      held_add(h, buf, len, r.owner);
      held_add(h, buf, len, r.data);
      held_add(h, buf, len, r.data + 2);
      if (h->nrec < HELD_MAX) h->rec[h->nrec++] = r;
    }
  h->malformed = k != 0;
}

static void held_free(struct held *h)
{
  for (int i = 0; i < h->n; ++i) free(h->name[i]);
}

static int no_dot_in_labels(const char *dn)
{
  for (; *dn; dn += 1 + (unsigned char)*dn)
    if (memchr(dn + 1, '.', (unsigned char)*dn)) return 0;
  return 1;
}

static size_t wire_len(const char *dn)
{
  size_t n = 0;
  while (dn[n]) n += 1 + (unsigned char)dn[n];
  return n + 1;
}

/* Every held name without a '.' in a label comes back through its text. */
static void names_round_trip(const struct held *h)
{
  static stralloc text;
  for (int i = 0; i < h->n; ++i) {
    char *back = 0;
    text.len = 0;
    CHECK(dns_name_text(&text, h->name[i]));
    CHECK(text.len <= DNS_NAME_TEXT_MAX || (text.len == 1 && text.s[0] == '.'));
    if (!no_dot_in_labels(h->name[i])) continue;
    CHECK(dns_name_wire(text.s, text.len, &back) == 1);
    CHECK(wire_len(back) == wire_len(h->name[i]) && !memcmp(back, h->name[i], wire_len(back)));
    free(back);
  }
}

/* s (len bytes) is the text of a held name, or of the one asked for. */
static int is_held_text(const struct held *h, const char *asked, const char *s, size_t len)
{
  static stralloc text;
  for (int i = -1; i < h->n; ++i) {
    text.len = 0;
    CHECK(dns_name_text(&text, i < 0 ? asked : h->name[i]));
    if (text.len == len && !memcmp(text.s, s, len)) return 1;
  }
  return 0;
}

/* Records of type t (class IN) that name owns, in the answer section. */
static size_t owned(const struct held *h, const char *buf, unsigned int len, const char *t,
                    const char *name)
{
  size_t n = 0;
  for (int i = 0; i < h->nrec; ++i) {
    char *owner = 0;
    if (memcmp(h->rec[i].type, t, 2) || memcmp(h->rec[i].rclass, DNS_C_IN, 2)) continue;
    if (!dns_packet_getname(buf, len, h->rec[i].owner, &owner)) continue;
    n += dns_domain_equal(owner, name);
    free(owner);
  }
  return n;
}

/* Whether DNS carries the text as a name, counted here: "." the root, else
 * one trailing dot off, labels of 1 to 63 bytes, at most 253 in all. */
static int carried(const char *s, size_t len)
{
  if (len == 1 && s[0] == '.') return 1;
  if (len > 1 && s[len - 1] == '.') --len;
  if (!len || len > DNS_NAME_TEXT_MAX) return 0;
  for (const char *p = s, *end = s + len; ; ) {
    const char *dot = memchr(p, '.', (size_t)(end - p));
    size_t label = (size_t)((dot ? dot : end) - p);
    if (label < 1 || label > DNS_LABEL_MAX) return 0;
    if (!dot) return 1;
    p = dot + 1;
  }
}

/* The name given as text: refused exactly when DNS cannot carry it, else
 * its wire form, which reads back as the text. */
static char *name_from_text(const char *s, size_t len)
{
  static stralloc back;
  char *dn = 0;
  int r = dns_name_wire(s, len, &dn);
  CHECK(r == carried(s, len));
  if (r == 0) return 0;
  CHECK(wire_len(dn) <= 255);
  back.len = 0;
  CHECK(dns_name_text(&back, dn));
  size_t want = len > 1 && s[len - 1] == '.' ? len - 1 : len;
  CHECK(back.len == want && !memcmp(back.s, s, want));
  return dn;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct held h;
  static struct dns_records rs;
  if (size < 1) return 0;
  int t = data[0] % 5;
  const char *qtype = qtypes[t];
  size_t skip = 1;
  char *name = 0;
  if (data[0] & 0x80) {
    if (size < 2 || size - 2 < data[1]) return 0;
    name = name_from_text((const char *)data + 2, data[1]);
    skip = 2 + (size_t)data[1];
  }
  if (size - skip > FUZZ_GUARD_MAX) { free(name); return 0; }
  unsigned int len = (unsigned int)(size - skip);
  const char *buf = fuzz_guarded(data + skip, len);

  held_read(&h, buf, len);
  names_round_trip(&h);
  if (!name && (len < 12 || !dns_packet_getname(buf, len, 12, &name))) {
    name = malloc(1);
    CHECK(name);
    name[0] = 0;
  }
  char *asked = malloc(wire_len(name));
  CHECK(asked);
  memcpy(asked, name, wire_len(name));

  unsigned int aliases = 0;
  enum dns_walk w = dns_records_owned(qtype, buf, len, &name, &aliases, &rs);
  CHECK(w != DNS_WALK_NOMEM);
  CHECK(aliases <= DNS_ALIASES_MAX + 1);
  CHECK((w == DNS_WALK_LOOP) == (aliases == DNS_ALIASES_MAX + 1));
  if (h.malformed) CHECK(w == DNS_WALK_MALFORMED);
  if (w == DNS_WALK_OK || w == DNS_WALK_AGAIN) {
    static stralloc text;
    text.len = 0;
    CHECK(dns_name_text(&text, name));
    CHECK(is_held_text(&h, asked, text.s, text.len));
    CHECK(rs.n == owned(&h, buf, len, qtype, name));
    if (!rs.n) CHECK(owned(&h, buf, len, DNS_T_CNAME, name) == 0);
    if (w == DNS_WALK_AGAIN) CHECK(!rs.n && aliases > 0 && (buf[3] & 15) == 0);
    for (size_t i = 0; i < rs.n; ++i) {
      const struct dns_value *v = &rs.v[i];
      const char *s = rs.text.s + v->at;
      CHECK(v->at <= rs.text.len && v->len <= rs.text.len - v->at);
      if (t == 0) CHECK(v->len == 4);
      else if (t == 1) CHECK(v->len == 16);
      else if (t == 4) CHECK(dns_txt_rdata_ok(s, (unsigned int)v->len));
      else CHECK(is_held_text(&h, asked, s, v->len));
      if (t != 2) CHECK(v->pref == 0);
    }
  }
  free(name);
  free(asked);
  held_free(&h);
  return 0;
}
