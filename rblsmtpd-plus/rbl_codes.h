/* Which A-record answers of a list count as a hit.
 *
 * A code set is a comma-separated list of addresses, ranges and prefixes,
 * all inside 127.0.0.0/8:  127.0.0.2   127.0.0.2-127.0.0.11   127.0.0.0/24
 * The empty set is the default: 127.0.0.0/8 except 127.255.255.252-255,
 * the error answers of Spamhaus and others (typo in the list name, query via
 * an open resolver, rate limit) that must never block anyone.
 * Answers outside 127/8 never match, whatever the set says. */
#ifndef RBL_CODES_H
#define RBL_CODES_H
#include <stdint.h>

#define RBL_CODES_MAX 16

struct rbl_codes {
  unsigned int n;                 /* 0: the default set */
  uint32_t lo[RBL_CODES_MAX];     /* host byte order, inclusive */
  uint32_t hi[RBL_CODES_MAX];
};

/* 1 parsed, 0 syntax error (or outside 127/8, or too many items) */
int rbl_codes_parse(struct rbl_codes *c, const char *s, unsigned int len);

/* ip: 4 bytes, network order */
int rbl_codes_match(const struct rbl_codes *c, const char ip[4]);

/* 127.255.255.252-255: a list's way of saying "your query failed" */
int rbl_code_is_error(const char ip[4]);
int rbl_code_is_loopback(const char ip[4]);

#endif
