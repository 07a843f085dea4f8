#include "smtp_addr.h"
#include <string.h>

#define ADDR_MAX 900

int smtp_addr_parse(const char *arg, size_t len, stralloc *addr)
{
  const char *end = arg + len;
  const char *lt = memchr(arg, '<', len);
  char terminator = '>';
  const char *p;
  if (lt) {
    p = lt + 1;
  } else {
    terminator = ' ';
    p = memchr(arg, ':', len);
    p = p ? p + 1 : end;
    while (p < end && *p == ' ') ++p;
  }
  if (p < end && *p == '@') {          /* source route: @a,@b:user@host */
    while (p < end && *p != ':') ++p;
    if (p < end) ++p;
  }
  int escaped = 0, quoted = 0;
  addr->len = 0;
  for (; p < end; ++p) {
    char c = *p;
    if (escaped) { escaped = 0; }
    else if (!quoted && c == terminator) break;
    else if (c == '\\') { escaped = 1; continue; }
    else if (c == '"') { quoted = !quoted; continue; }
    if (!stralloc_append(addr, &c)) return 0;
  }
  return addr->len < ADDR_MAX;
}

static int is_alnum(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int smtp_domain_valid(const char *s, size_t len)
{
  if (!len || len > 253) return 0;
  size_t label = 0;
  for (size_t i = 0; i < len; ++i) {
    char c = s[i];
    if (c == '.') {
      if (!label || s[i - 1] == '-') return 0;
      label = 0;
      continue;
    }
    if (!is_alnum(c) && c != '-') return 0;
    if (c == '-' && !label) return 0;
    if (++label > 63) return 0;
  }
  return label && s[len - 1] != '-';
}
