#include "dns_answer.h"
#include "dns.h"

static unsigned int u16(const char *p)
{
  return ((unsigned int)(unsigned char)p[0] << 8) | (unsigned char)p[1];
}

int dns_answer_start(struct dns_answer *a, const char *buf, unsigned int len)
{
  char header[12];
  unsigned int pos = dns_packet_copy(buf, len, 0, header, 12);
  if (!pos) return 0;
  pos = dns_packet_skipname(buf, len, pos);   /* the question: name, type, class */
  /* a name ending in a pointer on the last byte leaves pos past the end */
  if (!pos || pos > len || len - pos < 4) return 0;
  a->buf = buf;
  a->len = len;
  a->pos = pos + 4;
  a->left = u16(header + 6);
  return 1;
}

int dns_answer_next(struct dns_answer *a, struct dns_record *r)
{
  char fixed[10];     /* type, class, TTL, RDLENGTH */
  unsigned int pos;
  if (!a->left) return 0;
  r->owner = a->pos;
  pos = dns_packet_skipname(a->buf, a->len, a->pos);
  if (!pos) return -1;
  pos = dns_packet_copy(a->buf, a->len, pos, fixed, 10);
  if (!pos) return -1;
  r->type[0] = fixed[0];
  r->type[1] = fixed[1];
  r->rclass[0] = fixed[2];
  r->rclass[1] = fixed[3];
  r->data = pos;
  r->datalen = u16(fixed + 8);
  if (r->datalen > a->len - pos) return -1;
  a->pos = pos + r->datalen;
  --a->left;
  return 1;
}

int dns_txt_rdata_ok(const char *data, unsigned int datalen)
{
  unsigned int i = 0;
  while (i < datalen) i += 1 + (unsigned char)data[i];
  return i == datalen;
}
