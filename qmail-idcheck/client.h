/* The client's side of the session. Replies are collected and written in one
 * write when the client's input runs dry (a pipelined batch gets all its
 * replies together, as qmail-smtpd flushes). Lines are read with
 * qmail-smtpd's rule. The idle deadline runs from the last byte prog was
 * given (client_progress), not the last byte read: bytes the proxy holds back
 * (a line not yet ended, a possible end-of-data dot) are no progress to
 * qmail-smtpd, whose own timer keeps running. A client that stops reading or
 * goes idle ends the session (session_end.h). */
#ifndef CLIENT_H
#define CLIENT_H
#include <stddef.h>
#include <stdint.h>
#include "stralloc.h"

void client_start(int rfd, int wfd, int64_t timeout_ms);

void client_out(const char *s);
void client_out_sa(const stralloc *sa);
void client_flush(void);

/* Reads more, flushing first: >0 bytes added, 0 EOF (an idle client ends
 * the session with 451 timeout). */
long client_fill(void);
void client_progress(void);   /* prog was given bytes: the idle clock restarts */

enum line_status { LINE_OK, LINE_TOO_LONG, LINE_EOF };
/* The next line, without its LF and one CR before it (a bare LF ends a
 * command, as in qmail-smtpd). A line longer than max is read to its end
 * and thrown away. */
enum line_status client_line(stralloc *line, size_t max);

/* From now on the client is on these two descriptors (the TLS end's pipes
 * after STARTTLS): bytes read but not used are dropped, as RFC 3207 wants. */
void client_switch(int rfd, int wfd);

/* The bytes read but not yet used, for the DATA relay. */
size_t client_unread(const char **p);
void client_consume(size_t n);

#endif
