/* Which transport a checkID call takes: IDCHECK_SERVER names a warm
 * qmail-idcheckd socket; without it, the session starts its own
 * qmail-idcheck-python. Decided once, at the session's first call. */
#include "policy.h"
#include "policy_transport.h"
#include "netstring.h"
#include "policy_wire.h"
#include <errno.h>
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

enum frame_status policy_frame_read(int fd, stralloc *buf, stralloc *reply, deadline_t deadline)
{
  buf->len = 0;
  for (;;) {
    long frame = netstring_frame(buf->s, buf->len, WIRE_MAX_FRAME);
    if (frame < 0) return FRAME_MALFORMED;
    if (frame > 0) {
      const char *payload;
      size_t plen, pos = 0;
      if ((size_t)frame != buf->len) return FRAME_EXTRA;
      netstring_next(buf->s, (size_t)frame, &pos, &payload, &plen);
      return stralloc_copyb(reply, payload, plen) ? FRAME_OK : FRAME_NOMEM;
    }
    if (!stralloc_readyplus(buf, 65536)) return FRAME_NOMEM;
    ssize_t n = read_deadline(fd, buf->s + buf->len, 65536, deadline);
    if (n > 0) { buf->len += (size_t)n; continue; }
    if (n == 0) return FRAME_EOF;
    return errno == ETIMEDOUT ? FRAME_TIMEOUT : FRAME_ERROR;
  }
}
