/* prog (qmail-smtpd) on two pipes: commands go to it one at a time and each
 * reply is read whole. prog dying, or sending something that is not an SMTP
 * reply, ends the session with 421 (prog_die). */
#ifndef PROG_H
#define PROG_H
#include <stddef.h>
#include <stdint.h>
#include "stralloc.h"

void prog_start(char **argv, int64_t timeout_ms);

void prog_send(const char *s, size_t len);     /* the client's idle clock restarts */
int prog_reply(void);                          /* its next whole reply: the code */
/* line + CRLF to prog, and its whole reply: the code */
int prog_command(const stralloc *line);
/* The reply's lines, each CRLF-ended: what prog_reply last read. */
stralloc *prog_reply_text(void);
int prog_last_code(void);                      /* 421: prog is closing */

/* The next reply, calling serve() whenever fd is readable meanwhile; serve
 * returns the descriptor to watch from then on (-1: none). */
int prog_reply_serving(int fd, int (*serve)(void));

void prog_die(void) __attribute__((noreturn));   /* 421, prog killed */
/* prog sees EOF; its exit status, waiting at most seconds (then killed). */
int prog_finish(int64_t within_ms);

#endif
