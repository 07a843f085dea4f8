/* netstrings: a frame is complete exactly when one netstring at the start is
 * whole, and walking fields never reads past the buffer; whatever is walked
 * re-encodes to the same bytes. */
#include "fuzz.h"
#include "netstring.h"
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static stralloc again;
  const char *buf = (const char *)data;
  long frame = netstring_frame(buf, size, 4096);
  size_t pos = 0, flen;
  const char *f;
  int r = netstring_next(buf, size, &pos, &f, &flen);
  if (frame > 0) {
    CHECK(r == 1 && (long)pos == frame && flen + 3 <= (size_t)frame);
  } else if (frame == 0) {
    CHECK(r != 1 || flen > 4096);
  }
  pos = 0;
  again.len = 0;
  while ((r = netstring_next(buf, size, &pos, &f, &flen)) == 1) {
    CHECK(f >= buf && f + flen <= buf + size && pos <= size);
    CHECK(netstring_catb(&again, f, flen));
  }
  CHECK(r == 0 || r == -1);
  if (r == 0 && pos == size && again.len == size && size)
    CHECK(!memcmp(again.s, buf, size));
  return 0;
}
