/* A reply frame's payload from the policy process (or a hostile warm
 * server): decoding never reads past it; a decoded verdict re-encodes to a
 * frame that decodes to the same verdict; the verdict check either refuses
 * it or leaves a reply line with no control bytes, text within its limit,
 * and headers the wrapper can fold. */
#include "fuzz.h"
#include "header_fold.h"
#include "policy_wire.h"
#include "verdict.h"
#include <string.h>

static int same(const stralloc *a, const stralloc *b)
{
  return a->len == b->len && (!a->len || !memcmp(a->s, b->s, a->len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct policy_verdict v, w;
  static stralloc frame, why, line, folded;
  verdict_reset(&v);
  if (wire_reply_decode((const char *)data, size, &v) != 1) return 0;

  frame.len = 0;
  CHECK(wire_reply_encode(&frame, &v));
  struct wire_frame f;
  CHECK(wire_frame_parse(frame.s, frame.len, &f) == 1 && f.len == frame.len);
  verdict_reset(&w);
  CHECK(wire_reply_decode(f.payload, f.plen, &w) == 1);
  CHECK(w.action == v.action && w.nheaders == v.nheaders);
  CHECK(same(&w.xcode, &v.xcode) && same(&w.text, &v.text) && same(&w.headers, &v.headers));
  CHECK(w.code == v.code || (v.code >= 1000 || v.code == 0));

  if (verdict_check(&v, &why) != 1) return 0;
  CHECK(v.text.len <= VERDICT_TEXT_MAX && v.nheaders <= VERDICT_HEADERS_MAX);
  CHECK(verdict_reply(&v, &line));
  CHECK(line.len >= 6 && !memcmp(line.s + line.len - 2, "\r\n", 2));
  for (size_t i = 0; i < line.len - 2; ++i)
    CHECK((unsigned char)line.s[i] >= 32 && (unsigned char)line.s[i] <= 126);
  size_t hp = 0, ll, tl;
  const char *l, *t;
  while (wire_header_next(&v, &hp, &l, &ll, &t, &tl) == 1) {
    folded.len = 0;
    CHECK(header_fold(&folded, l, ll, t, tl));
  }
  return 0;
}
