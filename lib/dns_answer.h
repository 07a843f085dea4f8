/* The answer section of a DNS response, one record at a time, every record
 * checked to lie inside the packet. libowfat's dns_*_packet step over a
 * record whose RDLENGTH runs past the end of the packet and report what
 * they found before it, so a malformed answer reads as "no records"; read
 * through here, it is malformed.
 *
 *   struct dns_answer a;
 *   struct dns_record r;
 *   int k;
 *   if (!dns_answer_start(&a, buf, len)) ... malformed
 *   while ((k = dns_answer_next(&a, &r)) == 1) ... buf + r.data, r.datalen
 *   if (k == -1) ... malformed
 */
#ifndef DNS_ANSWER_H
#define DNS_ANSWER_H

struct dns_answer {
  const char *buf;
  unsigned int len;
  unsigned int pos;        /* the next record */
  unsigned int left;       /* records the header announces, not read yet */
};

struct dns_record {
  unsigned int owner;      /* the owner name, at this offset of the packet */
  char type[2];            /* DNS_T_A ... */
  char rclass[2];          /* DNS_C_IN ... */
  unsigned int data;       /* the RDATA: datalen bytes at this offset */
  unsigned int datalen;
};

/* Reads the header and skips the question. 1, or 0 when that much is not
 * there. */
int dns_answer_start(struct dns_answer *a, const char *buf, unsigned int len);

/* 1 with the next record in r, 0 after the last, -1 when the packet ends
 * before the record does (or before as many records as announced). */
int dns_answer_next(struct dns_answer *a, struct dns_record *r);

/* Each character-string of a TXT record's RDATA fits in it exactly:
 * 1, else 0. */
int dns_txt_rdata_ok(const char *data, unsigned int datalen);

#endif
