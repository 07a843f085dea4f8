#include "settings.h"
#include "env_number.h"
#include "log.h"
#include "sanitize.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct settings settings = {
  .timeout_ms = 1200 * 1000,
  .calltimeout_ms = 30 * 1000,
  .keyword = "ID",
  .bodymax = 1048576,
  .maxrcpt = 1000,
};

/* Why IDCHECK_KEYWORD cannot name the extension, or 0. */
static const char *keyword_unusable(const char *s)
{
  /* verbs of SMTP and of its common extensions and qmail patches: the ID
   * command would take their place and they would stop working */
  static const char *const verbs[] = {
    "HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
    "HELP", "SEND", "SOML", "SAML", "TURN", "ETRN", "ATRN", "AUTH", "STARTTLS", "BDAT",
    "XCLIENT", "XFORWARD", 0
  };
  /* ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
  size_t len = strlen(s);
  if (!len || len > 32 || s[0] == '-') return "not an EHLO keyword";
  for (size_t i = 0; i < len; ++i) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return "not an EHLO keyword";
  }
  for (const char *const *v = verbs; *v; ++v)
    if (!strcasecmp(s, *v)) return "an SMTP command of that name exists";
  return 0;
}

static void keyword_read(void)
{
  const char *kw = getenv("IDCHECK_KEYWORD");
  if (!kw) return;
  const char *unusable = keyword_unusable(kw);
  if (!unusable) {
    settings.keyword = kw;
    return;
  }
  stralloc shown = { 0 };
  if (!sanitize_catb(&shown, kw, strlen(kw), 40) || !stralloc_0(&shown)) return;
  warn("warning: IDCHECK_KEYWORD=", shown.s, " refused (", unusable, "); the keyword is ID",
       (char *)0);
  stralloc_free(&shown);
}

void settings_read(void)
{
  const char *onerror = getenv("IDCHECK_ONERROR");
  settings.remote_ip = getenv("TCPREMOTEIP");
  settings.timeout_ms = env_seconds_ms("IDCHECK_TIMEOUT", settings.timeout_ms);
  settings.calltimeout_ms = env_seconds_ms("IDCHECK_CALLTIMEOUT", settings.calltimeout_ms);
  settings.onerror_accept = onerror && !strcmp(onerror, "accept");
  settings.skip_policy = getenv("RELAYCLIENT") != 0 || getenv("IDCHECK_SKIP") != 0;
  settings.bodymax = env_ulong("IDCHECK_BODYMAX", settings.bodymax, 0, SIZE_MAX);
  settings.maxrcpt = env_ulong("IDCHECK_MAXRCPT", settings.maxrcpt, 1, ULONG_MAX);
  settings.tls_required = getenv("IDCHECK_TLS_REQUIRED") != 0;
  keyword_read();
}
