/* The MAIL/RCPT argument parser and the ID domain syntax on any argument: the
 * address is shorter than qmail-smtpd's 900-byte limit when accepted, and a
 * domain accepted for ID is an RFC 5321 Domain (letters, digits, inner
 * hyphens; labels 1-63; at most 253 in all; no literal, no trailing dot). */
#include "fuzz.h"
#include "smtp_addr.h"
#include <string.h>

static int alnum(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static stralloc addr;
  const char *s = (const char *)data;
  if (smtp_addr_parse(s, size, &addr)) CHECK(addr.len < 900 && addr.len <= size);
  if (smtp_domain_valid(s, size)) {
    CHECK(size >= 1 && size <= 253);
    size_t label = 0;
    for (size_t i = 0; i <= size; ++i) {
      if (i == size || s[i] == '.') {
        CHECK(label >= 1 && label <= 63);
        CHECK(alnum(s[i - 1]) && alnum(s[i - label]));
        label = 0;
      } else {
        CHECK(alnum(s[i]) || s[i] == '-');
        ++label;
      }
    }
  }
  return 0;
}
