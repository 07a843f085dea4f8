/* Seeds libowfat's DNS query ids and ports from getrandom(), once per
 * process, so that answers cannot be forged by guessing them. */
#ifndef DNS_SEED_H
#define DNS_SEED_H
int dns_seed(void);   /* 1 seeded (now or before), 0 getrandom failed */
#endif
