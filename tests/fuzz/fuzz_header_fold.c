/* header_fold on any label and text a policy could return: it either
 * refuses, or writes LF-ended lines of at most 998 bytes, no CR or NUL, each
 * line after the first starting with white space, and unfolding gives back
 * "Label: text" with the text's words intact. The first byte splits label
 * and text. */
#include "fuzz.h"
#include "header_fold.h"
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static stralloc out, unfolded;
  if (size < 1) return 0;
  size_t llen = data[0] % 80;
  if (llen > size - 1) llen = size - 1;
  const char *label = (const char *)data + 1, *text = label + llen;
  size_t tlen = size - 1 - llen;
  out.len = 0;
  if (!header_fold(&out, label, llen, text, tlen)) return 0;
  CHECK(header_label_valid(label, llen) && header_text_valid(text, tlen));
  CHECK(out.len && out.s[out.len - 1] == '\n');
  size_t pos = 0, lines = 0;
  unfolded.len = 0;
  while (pos < out.len) {
    const char *l = out.s + pos;
    const char *lf = memchr(l, '\n', out.len - pos);
    size_t len = (size_t)(lf - l);
    CHECK(len <= 998 && !memchr(l, '\r', len) && !memchr(l, '\0', len));
    if (lines) CHECK(len && (l[0] == ' ' || l[0] == '\t'));
    /* no line of white space only: some parsers end the header there */
    size_t k = 0;
    while (k < len && (l[k] == ' ' || l[k] == '\t')) ++k;
    CHECK(k < len);
    stralloc_catb(&unfolded, l, len);
    pos += len + 1;
    ++lines;
  }
  /* the label comes first, with its colon */
  size_t ln = llen && label[llen - 1] == ':' ? llen - 1 : llen;
  CHECK(unfolded.len > ln && !memcmp(unfolded.s, label, ln) && unfolded.s[ln] == ':');
  return 0;
}
