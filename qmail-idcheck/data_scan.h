/* Where a message ends, as qmail-smtpd sees it: only CRLF . CRLF, and a bare
 * CR or bare LF anywhere is refused (qmail-smtpd refuses a bare LF; a bare CR
 * is refused too because qmail-remote later turns it into CRLF without
 * dot-stuffing: SMTP smuggling). So the proxy and every later hop always
 * agree where a message ends. */
#ifndef DATA_SCAN_H
#define DATA_SCAN_H
#include <stddef.h>

enum data_state {
  D_BOL,      /* at the start of a line */
  D_MID,      /* inside a line */
  D_CR,       /* after a CR: only LF may follow */
  D_DOT,      /* "." at the start of a line */
  D_DOTCR     /* ".\r" at the start of a line: LF ends the message */
};
enum data_scan { SCAN_MORE, SCAN_END, SCAN_BARE };

/* Walks buf[0..len) from *st. SCAN_END: *at is the index after the
 * terminating LF (the terminator is the 3 bytes before it). SCAN_BARE: a CR
 * or LF that is not part of CRLF. SCAN_MORE: all of it is message. */
enum data_scan data_scan(enum data_state *st, const char *buf, size_t len, size_t *at);

/* One step of the relay over the unread bytes buf[0..len), from *st:
 *   SCAN_MORE  forward the first `forward` bytes and consume as many; the
 *              rest (".", ".\r" at a line's start: maybe the terminator)
 *              waits for more input, and is scanned again from a line's start
 *   SCAN_END   forward `forward` bytes (the message's last), consume
 *              `consume` (the terminator too): the message is complete
 *   SCAN_BARE  a bare CR or LF: nothing more may be forwarded */
struct data_step {
  enum data_scan result;
  size_t forward, consume;
};
struct data_step data_step(enum data_state *st, const char *buf, size_t len);

#endif
