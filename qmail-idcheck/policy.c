/* Which transport a checkID call takes: IDCHECK_SERVER names a warm
 * qmail-idcheckd socket; without it, the session starts its own
 * qmail-idcheck-python. Decided at the session's first call; a session whose
 * server cannot be reached falls back to its own process for the rest of
 * the session (IDCHECK_FALLBACK, see fallback_wanted). */
#include "policy.h"
#include "log.h"
#include "policy_process.h"
#include "policy_server.h"
#include "sanitize.h"
#include <stdlib.h>
#include <string.h>

static int decided;
static const char *server;

/* Text for a log line, sanitized (a static buffer: one at a time). */
static const char *loggable(const char *s, size_t len, size_t max)
{
  static stralloc sa;
  sa.len = 0;
  if (!sanitize_catb(&sa, s, len, max) || !stralloc_0(&sa)) return "?";
  return sa.s;
}

/* IDCHECK_FALLBACK: "embedded" (the default, also when unset or empty) or
 * "none". Anything else is taken as "none" and said in the log: an
 * administrator who set the variable meant to change the default. */
static int fallback_wanted(void)
{
  const char *v = getenv("IDCHECK_FALLBACK");
  if (!v || !*v || !strcmp(v, "embedded")) return 1;
  if (strcmp(v, "none"))
    warn("IDCHECK_FALLBACK=", loggable(v, strlen(v), 60), " unknown, taken as none", (char *)0);
  return 0;
}

/* From now on this session's calls run in its own qmail-idcheck-python. */
static void fall_back(const stralloc *why)
{
  warn("policy server unreachable (", loggable(why->s, why->len, 300),
       "); checkID runs embedded for this session", (char *)0);
  server = 0;
}

int policy_call(const stralloc *request, stralloc *reply, deadline_t deadline,
                stralloc *why)
{
  if (!decided) {
    server = getenv("IDCHECK_SERVER");
    if (server && !*server) server = 0;
    decided = 1;
  }
  if (server) {
    int r = policy_server_call(server, request, reply, deadline, why);
    if (r != SERVER_DOWN) return r;
    if (!fallback_wanted()) return 0;
    fall_back(why);
  }
  return policy_process_call(request, reply, deadline, why);
}

void policy_end(void)
{
  if (!decided) return;
  policy_server_end();
  policy_process_end();
}
