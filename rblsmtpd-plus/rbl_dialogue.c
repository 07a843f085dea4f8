#include "rbl_dialogue.h"
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WRITE_LIMIT_MS 60000   /* -t 0: rblsmtpd has no limit on this write */
#define VERB_MAX 16            /* longer verbs are no command we know */

static void say(const char *s, size_t len, deadline_t deadline)
{
  if (write_all_deadline(1, s, len, deadline) == -1) _exit(0);
}

static int verb_is(const char *verb, unsigned int len, const char *name)
{
  if (len != strlen(name)) return 0;
  for (unsigned int i = 0; i < len; ++i) {
    char c = verb[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != name[i]) return 0;
  }
  return 1;
}

/* As ucspi-tcp's commands(): one CR before LF is dropped, the verb ends at
 * the first space (a NUL does not end it), case is ignored. */
static void answer(const char *verb, unsigned int len, int overflow,
                   const char *reject, unsigned int rejectlen, deadline_t deadline)
{
  static const char ok[] = "250 rblsmtpd.local\r\n";
  static const char bye[] = "221 rblsmtpd.local\r\n";
  static const char *const accepted[] = { "helo", "ehlo", "mail", "rset", "noop" };

  if (!overflow) {
    if (verb_is(verb, len, "quit")) {
      say(bye, sizeof bye - 1, deadline);
      _exit(0);
    }
    for (unsigned int i = 0; i < sizeof accepted / sizeof *accepted; ++i)
      if (verb_is(verb, len, accepted[i])) {
        say(ok, sizeof ok - 1, deadline);
        return;
      }
  }
  say(reject, rejectlen, deadline);
}

void rbl_dialogue_block(const char *message, unsigned int len, unsigned long timeout)
{
  static const char greeting[] = "220 rblsmtpd.local\r\n";
  char reject[512];
  char buf[512];
  char verb[VERB_MAX];
  unsigned int verblen = 0;
  int inverb = 1, overflow = 0;
  deadline_t deadline;

  signal(SIGPIPE, SIG_IGN);   /* a client gone mid-reply ends us by exit 0, not a signal */
  if (len > sizeof reject - 2) len = sizeof reject - 2;
  memcpy(reject, message, len);
  memcpy(reject + len, "\r\n", 2);
  len += 2;

  if (!timeout) {
    say(reject, len, deadline_in(WRITE_LIMIT_MS));
    _exit(0);
  }
  deadline = deadline_in(timeout > 86400000 ? (int64_t)86400000 * 1000 : (int64_t)timeout * 1000);
  say(greeting, sizeof greeting - 1, deadline);

  for (;;) {
    ssize_t n = read_deadline(0, buf, sizeof buf, deadline);
    if (n <= 0) _exit(0);   /* EOF, error, or the timeout: a silent drop */
    for (ssize_t i = 0; i < n; ++i) {
      char c = buf[i];
      if (c == '\n') {
        if (inverb && !overflow && verblen && verb[verblen - 1] == '\r') --verblen;
        answer(verb, verblen, overflow, reject, len, deadline);
        verblen = 0;
        inverb = 1;
        overflow = 0;
      } else if (inverb) {
        if (c == ' ')
          inverb = 0;
        else if (verblen < VERB_MAX)
          verb[verblen++] = c;
        else
          overflow = 1;
      }
    }
  }
}

enum rbl_early rbl_wait_greeting(deadline_t until)
{
  char c;
  int r = fd_wait(0, POLLIN, until);
  if (r <= 0) return RBL_QUIET;
  /* Whatever is readable now was sent before any greeting. Reading it is
   * fine: either way prog will not run. */
  if (read(0, &c, 1) == 1) return RBL_TALKED;
  return RBL_LEFT;
}

void rbl_dialogue_early_talker(const char *reply, unsigned int len)
{
  char buf[512];
  size_t drained = 0;
  deadline_t deadline = deadline_in(2000);

  signal(SIGPIPE, SIG_IGN);
  say(reply, len, deadline);
  shutdown(1, SHUT_WR);   /* fails harmlessly when fd 1 is not a socket */
  while (drained < 65536) {
    ssize_t n = read_deadline(0, buf, sizeof buf, deadline);
    if (n <= 0) break;
    drained += (size_t)n;
  }
  _exit(0);
}
