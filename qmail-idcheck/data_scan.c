#include "data_scan.h"
#include <string.h>

enum data_scan data_scan(enum data_state *st, const char *buf, size_t len, size_t *at)
{
  enum data_state s = *st;
  for (size_t i = 0; i < len; ++i) {
    char c = buf[i];
    switch (s) {
      case D_BOL:
        s = c == '.' ? D_DOT : c == '\r' ? D_CR : D_MID;
        if (c == '\n') return SCAN_BARE;
        break;
      case D_MID: {
        /* most bytes are inside a line: skip to its first CR or LF at
         * memchr's speed (a message is scanned whole, every byte) */
        const char *cr = memchr(buf + i, '\r', len - i);
        size_t end = cr ? (size_t)(cr - buf) : len;
        if (memchr(buf + i, '\n', end - i)) return SCAN_BARE;
        if (!cr) { i = len - 1; break; }
        i = end;
        s = D_CR;
        break;
      }
      case D_CR:
        if (c != '\n') return SCAN_BARE;
        s = D_BOL;
        break;
      case D_DOT:
        if (c == '\n') return SCAN_BARE;
        s = c == '\r' ? D_DOTCR : D_MID;
        break;
      case D_DOTCR:
        if (c != '\n') return SCAN_BARE;
        *st = D_BOL;
        *at = i + 1;
        return SCAN_END;
    }
  }
  *st = s;
  *at = len;
  return SCAN_MORE;
}

struct data_step data_step(enum data_state *st, const char *buf, size_t len)
{
  struct data_step step = { SCAN_BARE, 0, 0 };
  size_t at;
  step.result = data_scan(st, buf, len, &at);
  if (step.result == SCAN_END) {
    step.forward = at - 3;   /* the terminator ".\r\n" is the last three */
    step.consume = at;
  } else if (step.result == SCAN_MORE) {
    size_t held = *st == D_DOT ? 1 : *st == D_DOTCR ? 2 : 0;
    step.forward = step.consume = len - held;
    if (held) *st = D_BOL;   /* the held bytes are scanned again */
  }
  return step;
}
