#include "header_fold.h"

#define FOLD_SOFT 78
#define FOLD_HARD 998

int header_label_valid(const char *s, size_t len)
{
  if (len && s[len - 1] == ':') --len;
  if (!len || len > 76) return 0;
  for (size_t i = 0; i < len; ++i)
    if (s[i] < 33 || s[i] > 126 || s[i] == ':') return 0;
  return 1;
}

int header_text_valid(const char *s, size_t len)
{
  for (size_t i = 0; i < len; ++i) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 32 && c != '\t') || c == 127) return 0;   /* CR, LF, NUL: injection */
  }
  return 1;
}

static int is_wsp(char c) { return c == ' ' || c == '\t'; }

int header_fold(stralloc *out, const char *label, size_t llen,
                const char *text, size_t tlen)
{
  if (!header_label_valid(label, llen) || !header_text_valid(text, tlen)) return 0;
  size_t mark = out->len;
  if (label[llen - 1] == ':') --llen;
  if (!stralloc_catb(out, label, llen) || !stralloc_catb(out, ":", 1)) return 0;
  size_t col = llen + 1;
  size_t i = 0;
  /* trailing white space would fold onto a line of its own, and a line of
   * only white space can end the header section for some parsers */
  while (tlen && is_wsp(text[tlen - 1])) --tlen;
  /* The text is a run of words, each with the white space before it; a word
   * goes on a new line (the LF inserted before its white space) when it
   * would pass the soft limit. The first word keeps a space after the colon. */
  if (tlen && !is_wsp(text[0])) {
    if (!stralloc_catb(out, " ", 1)) return 0;
    ++col;
  }
  while (i < tlen) {
    size_t start = i;
    while (i < tlen && is_wsp(text[i])) ++i;
    while (i < tlen && !is_wsp(text[i])) ++i;
    size_t wlen = i - start;
    if (col + wlen > FOLD_SOFT && col > 1 && start > 0 && is_wsp(text[start])) {
      if (!stralloc_catb(out, "\n", 1)) return 0;
      col = 0;
    }
    if (col + wlen > FOLD_HARD) { out->len = mark; return 0; }
    if (!stralloc_catb(out, text + start, wlen)) return 0;
    col += wlen;
  }
  return stralloc_catb(out, "\n", 1);
}
