#include "dns_records.h"
#include "dns_answer.h"
#include "dns.h"
#include <stdlib.h>
#include <string.h>

int dns_name_text(stralloc *out, const char *dn)
{
  if (!*dn) return stralloc_cats(out, ".");
  for (const char *label = dn; *label; label += 1 + (unsigned char)*label)
    if ((label != dn && !stralloc_append(out, "."))
        || !stralloc_catb(out, label + 1, (unsigned char)*label))
      return 0;
  return 1;
}

int dns_name_wire(const char *s, size_t len, char **dn)
{
  size_t out = 0, start = 0;
  *dn = 0;
  if (len == 1 && s[0] == '.') len = 0;              /* the root */
  else if (len > 1 && s[len - 1] == '.') --len;
  else if (!len) return 0;
  if (len > DNS_NAME_TEXT_MAX) return 0;
  char *w = malloc(len + 2);
  if (!w) return -1;
  for (size_t i = 0; len && i <= len; ++i) {
    if (i < len && s[i] != '.') continue;
    size_t n = i - start;
    if (n < 1 || n > DNS_LABEL_MAX) {
      free(w);
      return 0;
    }
    w[out++] = (char)n;
    memcpy(w + out, s + start, n);
    out += n;
    start = i + 1;
  }
  w[out] = 0;
  *dn = w;
  return 1;
}

void dns_records_free(struct dns_records *r)
{
  stralloc_free(&r->text);
  free(r->v);
  r->v = 0;
  r->n = r->a = 0;
}

static unsigned int u16(const char *p)
{
  return ((unsigned int)(unsigned char)p[0] << 8) | (unsigned char)p[1];
}

/* The name at pos in the packet, as text: 1, 0 malformed, -1 out of memory
 * (libowfat's dns_packet_getname tells neither apart: taken as malformed). */
static int name_text_at(stralloc *out, const char *buf, unsigned int len, unsigned int pos)
{
  char *dn = 0;
  if (!dns_packet_getname(buf, len, pos, &dn)) return 0;
  int ok = dns_name_text(out, dn);
  free(dn);
  return ok ? 1 : -1;
}

/* r's value appended to out: 1, 0 malformed, -1 out of memory. */
static int value_add(struct dns_records *out, const char *qtype, const char *buf,
                     unsigned int len, const struct dns_record *r)
{
  struct dns_value v = { 0, out->text.len, 0 };
  const char *data = buf + r->data;
  int ok = 1;
  if (!memcmp(qtype, DNS_T_A, 2) || !memcmp(qtype, DNS_T_AAAA, 2)) {
    if (r->datalen != (!memcmp(qtype, DNS_T_A, 2) ? 4u : 16u)) return 0;
    ok = stralloc_catb(&out->text, data, r->datalen) ? 1 : -1;
  } else if (!memcmp(qtype, DNS_T_MX, 2)) {
    if (r->datalen < 3) return 0;
    v.pref = u16(data);
    ok = name_text_at(&out->text, buf, len, r->data + 2);
  } else if (!memcmp(qtype, DNS_T_PTR, 2)) {
    ok = name_text_at(&out->text, buf, len, r->data);
  } else {
    if (!dns_txt_rdata_ok(data, r->datalen)) return 0;
    ok = stralloc_catb(&out->text, data, r->datalen) ? 1 : -1;
  }
  if (ok <= 0) return ok;
  v.len = out->text.len - v.at;
  if (out->n == out->a) {
    size_t a = out->a ? out->a * 2 : 8;
    struct dns_value *nv = realloc(out->v, a * sizeof *nv);
    if (!nv) return -1;
    out->v = nv;
    out->a = a;
  }
  out->v[out->n++] = v;
  return 1;
}

/* One pass over the answer: the records of qtype that name owns into out,
 * the first alias target it owns into *target (unless set). 1, 0
 * malformed, -1 out of memory. */
static int owned_pass(const char *qtype, const char *buf, unsigned int len,
                      const char *name, struct dns_records *out, char **target)
{
  struct dns_answer a;
  struct dns_record r;
  int k;
  if (!dns_answer_start(&a, buf, len)) return 0;
  while ((k = dns_answer_next(&a, &r)) == 1) {
    char *owner = 0;
    int wanted = !memcmp(r.type, qtype, 2), alias = !memcmp(r.type, DNS_T_CNAME, 2);
    if (memcmp(r.rclass, DNS_C_IN, 2) || (!wanted && !alias)) continue;
    if (!dns_packet_getname(buf, len, r.owner, &owner)) return 0;
    int mine = dns_domain_equal(owner, name);
    free(owner);
    if (!mine) continue;
    if (wanted) {
      int v = value_add(out, qtype, buf, len, &r);
      if (v <= 0) return v;
    } else if (!*target && !dns_packet_getname(buf, len, r.data, target)) {
      return 0;
    }
  }
  return k == 0;
}

enum dns_walk dns_records_owned(const char *qtype, const char *buf, unsigned int len,
                                char **name, unsigned int *aliases, struct dns_records *out)
{
  int followed = 0;
  for (;;) {
    char *target = 0;
    out->text.len = 0;
    out->n = 0;
    int r = owned_pass(qtype, buf, len, *name, out, &target);
    if (r <= 0) {
      free(target);
      return r < 0 ? DNS_WALK_NOMEM : DNS_WALK_MALFORMED;
    }
    if (out->n || !target) {
      unsigned int rcode = (unsigned char)buf[3] & 15;   /* a header is there */
      free(target);
      return !out->n && followed && rcode == 0 ? DNS_WALK_AGAIN : DNS_WALK_OK;
    }
    if (++*aliases > DNS_ALIASES_MAX) {
      free(target);
      return DNS_WALK_LOOP;
    }
    free(*name);
    *name = target;
    followed = 1;
  }
}
