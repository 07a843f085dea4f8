/* What the client sees when it is blocked: rblsmtpd's limited SMTP
 * dialogue, byte for byte; and the greeting delay's early-talker check. */
#ifndef RBL_DIALOGUE_H
#define RBL_DIALOGUE_H
#include "deadline.h"

/* message: "451 text" or "553 text", already sanitized, without CRLF.
 * timeout 0: say the message once and leave, as rblsmtpd -t 0 does.
 * Never returns: exits 0 at QUIT, EOF, or silently at the timeout. */
void rbl_dialogue_block(const char *message, unsigned int len, unsigned long timeout)
  __attribute__((noreturn));

enum rbl_early { RBL_QUIET, RBL_TALKED, RBL_LEFT };

/* Watches the client (fd 0) until the deadline without reading what a
 * quiet client may later send: RBL_QUIET, or RBL_TALKED (it sent bytes),
 * or RBL_LEFT (it closed the connection). */
enum rbl_early rbl_wait_greeting(deadline_t until);

/* The early talker's 554, then a short drain so the reply is not lost to
 * a reset; exits 0. */
void rbl_dialogue_early_talker(const char *reply, unsigned int len)
  __attribute__((noreturn));

#endif
