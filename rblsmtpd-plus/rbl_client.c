#include "rbl_client.h"
#include "rbl_numbers.h"
#include <arpa/inet.h>
#include <string.h>

int rbl_client_parse(struct rbl_client *c, const char *s)
{
  char buf[INET6_ADDRSTRLEN + 1];
  size_t len = strcspn(s, "%");

  c->family = 0;
  if (!len || len >= sizeof buf) return 0;
  memcpy(buf, s, len);
  buf[len] = 0;
  if (strchr(buf, ':')) {
    static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
    if (inet_pton(AF_INET6, buf, c->ip) != 1) return 0;
    if (!memcmp(c->ip, mapped, 12)) {
      memmove(c->ip, c->ip + 12, 4);
      c->family = 4;
    } else
      c->family = 6;
    return 1;
  }
  if (inet_pton(AF_INET, buf, c->ip) != 1) return 0;
  c->family = 4;
  return 1;
}

int rbl_client_name(stralloc *out, const struct rbl_client *c, const char *base, unsigned int baselen)
{
  static const char hex[] = "0123456789abcdef";
  char num[4];

  if (!stralloc_copys(out, "")) return 0;
  if (c->family == 4) {
    for (int i = 3; i >= 0; --i)
      if (!rbl_cat_ulong(out, c->ip[i]) || !stralloc_cats(out, ".")) return 0;
  } else {
    for (int i = 15; i >= 0; --i) {
      num[0] = hex[c->ip[i] & 15];
      num[1] = '.';
      num[2] = hex[c->ip[i] >> 4];
      num[3] = '.';
      if (!stralloc_catb(out, num, 4)) return 0;
    }
  }
  return stralloc_catb(out, base, baselen);
}
