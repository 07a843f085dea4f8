/* The client's address (TCPREMOTEIP) and its DNSBL query names:
 * 192.0.2.1 -> "1.2.0.192.base"; ::ffff:192.0.2.1 is the IPv4 client
 * 192.0.2.1; 2001:db8::1 -> 32 reversed nibbles, "1.0.0.0...8.b.d.0.1.0.0.2.base". */
#ifndef RBL_CLIENT_H
#define RBL_CLIENT_H
#include "stralloc.h"

struct rbl_client {
  int family;              /* 4, 6, or 0: not an address */
  unsigned char ip[16];    /* IPv4 in ip[0..3] */
};

/* 1 an address (a "%zone" suffix is ignored), 0 not one */
int rbl_client_parse(struct rbl_client *c, const char *s);

/* out = reversed labels + "." + base (dot form); 0 out of memory */
int rbl_client_name(stralloc *out, const struct rbl_client *c, const char *base, unsigned int baselen);

#endif
