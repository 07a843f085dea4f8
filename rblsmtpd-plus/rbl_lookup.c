#include "rbl_lookup.h"
#include "dns_answer.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "iopause.h"
#include "taia.h"

void rbl_query_start(struct rbl_query *q, const char servers[256],
                     const char *name, unsigned int len, const char qtype[2])
{
  char *dn = 0;

  memset(&q->tx, 0, sizeof q->tx);
  q->timedout = 0;
  q->state = RBL_Q_FAILED;
  memcpy(q->qtype, qtype, 2);
  if (!stralloc_copys(&q->result, "")) return;
  if (!dns_domain_fromdot(&dn, name, len)) return;
  /* 16 zero bytes: any local address */
  if (dns_transmit_start(&q->tx, servers, 1, dn, qtype, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0") == 0)
    q->state = RBL_Q_RUNNING;
  free(dn);
}

void rbl_query_stop(struct rbl_query *q)
{
  dns_transmit_free(&q->tx);
  if (q->state == RBL_Q_RUNNING) q->state = RBL_Q_IDLE;
}

/* Servers rotate their answers; sorted, the hits read the same each time. */
static void sort_ip4(stralloc *sa)
{
  for (unsigned int i = 4; i + 4 <= sa->len; i += 4)
    for (unsigned int j = i; j >= 4 && memcmp(sa->s + j - 4, sa->s + j, 4) > 0; j -= 4) {
      char t[4];
      memcpy(t, sa->s + j, 4);
      memcpy(sa->s + j, sa->s + j - 4, 4);
      memcpy(sa->s + j - 4, t, 4);
    }
}

/* libowfat's parsers take a record that runs past the packet end, or an A
 * record that is not 4 bytes, for "no addresses": under -c that would let
 * a broken or hostile server open the door. Such an answer is a failure. */
static int well_formed(const char *buf, unsigned int len)
{
  struct dns_answer a;
  struct dns_record r;
  int k;
  if (!dns_answer_start(&a, buf, len)) return 0;
  while ((k = dns_answer_next(&a, &r)) == 1) {
    if (memcmp(r.rclass, DNS_C_IN, 2)) continue;
    if (!memcmp(r.type, DNS_T_A, 2) && r.datalen != 4) return 0;
    if (!memcmp(r.type, DNS_T_TXT, 2) && !dns_txt_rdata_ok(buf + r.data, r.datalen)) return 0;
  }
  return k == 0;
}

int rbl_answer_read(const char qtype[2], const char *packet, unsigned int len, stralloc *result)
{
  int r;
  if (!well_formed(packet, len))
    r = -1;
  else if (!memcmp(qtype, DNS_T_TXT, 2))
    r = dns_txt_packet(result, packet, len);
  else {
    r = dns_ip4_packet(result, packet, len);
    if (r != -1) sort_ip4(result);
  }
  if (r == -1) result->len = 0;
  return r == -1 ? -1 : 0;
}

static void answered(struct rbl_query *q)
{
  int r = rbl_answer_read(q->qtype, q->tx.packet, q->tx.packetlen, &q->result);
  q->state = r == -1 ? RBL_Q_FAILED : RBL_Q_ANSWERED;
  dns_transmit_free(&q->tx);
}

/* iopause wants an absolute taia: now + ms */
static void taia_after_ms(struct taia *t, const struct taia *now, int64_t ms)
{
  struct taia d;
  memset(&d, 0, sizeof d);
  d.sec.x = (uint64_t)(ms / 1000);
  d.nano = (uint32)((ms % 1000) * 1000000);
  taia_add(t, now, &d);
}

void rbl_query_run(struct rbl_query *q[], unsigned int n, deadline_t deadline,
                   int (*enough)(void *), void *ctx)
{
  iopause_fd *x = calloc(n ? n : 1, sizeof *x);
  unsigned int *which = calloc(n ? n : 1, sizeof *which);

  if (x && which)
    for (;;) {
      struct taia stamp, until;
      unsigned int k = 0;
      int64_t left = deadline - now_ms();
      if (left <= 0) break;
      if (left > 86400000) left = 86400000;
      taia_now(&stamp);
      taia_after_ms(&until, &stamp, left);
      for (unsigned int i = 0; i < n; ++i)
        if (q[i]->state == RBL_Q_RUNNING) {
          dns_transmit_io(&q[i]->tx, &x[k], &until);
          which[k++] = i;
        }
      if (!k) break;
      iopause(x, k, &until, &stamp);
      taia_now(&stamp);
      for (unsigned int j = 0; j < k; ++j) {
        struct rbl_query *one = q[which[j]];
        int r = dns_transmit_get(&one->tx, &x[j], &stamp);
        if (r == -1) {
          one->state = RBL_Q_FAILED;
          dns_transmit_free(&one->tx);
        } else if (r == 1)
          answered(one);
      }
      if (enough && enough(ctx)) {
        for (unsigned int i = 0; i < n; ++i) rbl_query_stop(q[i]);
        break;
      }
    }
  free(x);
  free(which);
  for (unsigned int i = 0; i < n; ++i)
    if (q[i]->state == RBL_Q_RUNNING) {
      dns_transmit_free(&q[i]->tx);
      q[i]->state = RBL_Q_FAILED;
      q[i]->timedout = 1;
    }
}
