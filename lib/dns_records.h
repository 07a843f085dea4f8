/* What idcheck.dns makes of a DNS answer, without Python (so a fuzzer
 * drives it; python-host/python_dns.c only turns the result into Python
 * objects and does the I/O).
 *
 * A name as text is its labels' bytes joined by '.', any byte, no escapes
 * ("." the root): what idcheck.dns takes and returns. The one ambiguity of
 * that form: a label holding a '.' byte reads back as two labels (or as
 * none, when that makes an empty label). */
#ifndef DNS_RECORDS_H
#define DNS_RECORDS_H
#include <stddef.h>
#include "stralloc.h"

#define DNS_NAME_TEXT_MAX 253   /* characters: 255 bytes on the wire */
#define DNS_LABEL_MAX 63
#define DNS_ALIASES_MAX 10      /* CNAMEs followed per lookup, as pyspf's MAX_CNAME */

/* The name dn (wire form: length-prefixed labels, as libowfat's dns_*
 * functions use) as text, appended to out: 1, 0 out of memory. */
int dns_name_text(stralloc *out, const char *dn);

/* Text to wire form, malloc'ed into *dn. Between the dots are each label's
 * bytes as they are (a backslash is a byte, not an escape); one trailing dot
 * is allowed. 1 ok; 0 not a name DNS can carry (an empty name or label, a
 * label over 63 bytes, over 255 bytes on the wire); -1 out of memory. */
int dns_name_wire(const char *s, size_t len, char **dn);

/* One record's value; its bytes are text.s + at, len bytes:
 *   A, AAAA  the address (4 or 16 bytes)
 *   MX       the exchange as text (dns_name_text); pref its preference
 *   PTR      the target as text
 *   TXT      the RDATA as it is: character-strings, checked to fit it */
struct dns_value {
  unsigned int pref;
  size_t at, len;
};

struct dns_records {
  stralloc text;
  struct dns_value *v;
  size_t n, a;
};
void dns_records_free(struct dns_records *r);

enum dns_walk {
  DNS_WALK_OK,          /* out holds the records (maybe none) */
  DNS_WALK_AGAIN,       /* none here: ask again for *name (an alias's target) */
  DNS_WALK_MALFORMED,   /* the packet, or a record of the result, is malformed */
  DNS_WALK_LOOP,        /* more than DNS_ALIASES_MAX aliases over the lookup */
  DNS_WALK_NOMEM
};

/* The records of qtype (DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_PTR or
 * DNS_T_TXT; class IN) that *name (wire form, malloc'ed) owns in the
 * answer buf, in the server's order, following the aliases (CNAME, class
 * IN) the answer holds from *name on, as a resolver library does: when a
 * name owns no records of qtype but an alias, its first alias's target is
 * looked at next, and *name becomes it. Records of other names are left
 * alone.
 *
 * A recursive resolver (dnscache) answers with the whole chain, an
 * authoritative server (tinydns) with the first CNAME alone: so an answer
 * without an error code (NOERROR) that ends at an alias with nothing here
 * is DNS_WALK_AGAIN, for the caller to ask for *name. *aliases counts the
 * CNAMEs followed over the whole lookup (start it at 0). */
enum dns_walk dns_records_owned(const char *qtype, const char *buf, unsigned int len,
                                char **name, unsigned int *aliases, struct dns_records *out);

#endif
