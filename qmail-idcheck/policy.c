/* Which transport a checkID call takes: IDCHECK_SERVER names a warm
 * qmail-idcheckd socket; without it, the session starts its own
 * qmail-idcheck-python. Decided once, at the session's first call. */
#include "policy.h"
#include "policy_transport.h"
#include <stdlib.h>

static int decided;
static const char *server;

int policy_call(const stralloc *request, stralloc *reply, deadline_t deadline,
                stralloc *why)
{
  if (!decided) {
    server = getenv("IDCHECK_SERVER");
    if (server && !*server) server = 0;
    decided = 1;
  }
  if (server) return policy_server_call(server, request, reply, deadline, why);
  return policy_process_call(request, reply, deadline, why);
}

void policy_end(void)
{
  if (!decided) return;
  if (server) policy_server_end();
  else policy_process_end();
}
