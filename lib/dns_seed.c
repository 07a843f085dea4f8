#include "dns_seed.h"
#include "dns.h"
#include <errno.h>
#include <sys/random.h>
#include <sys/types.h>

int dns_seed(void)
{
  static int seeded;
  char seed[128];
  size_t got = 0;
  if (seeded) return 1;
  while (got < sizeof seed) {
    ssize_t r = getrandom(seed + got, sizeof seed - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    got += (size_t)r;
  }
  dns_random_init(seed);
  seeded = 1;
  return 1;
}
