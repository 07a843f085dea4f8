/* The largest message the chain takes while qmail-idcheck-queue spools it
 * (IDCHECK_DATABYTES): the proxy refuses a larger one with 552, and the
 * wrapper never holds more than that (plus qmail-smtpd's Received line) in
 * its spool. qmail's own DATABYTES may be smaller and still applies. */
#ifndef DATABYTES_H
#define DATABYTES_H

#define DATABYTES_DEFAULT 52428800UL     /* 50 MiB */
#define DATABYTES_SLACK 65536UL          /* the wrapper's room for Received */

/* IDCHECK_DATABYTES if it is a positive decimal number, else the default. */
unsigned long databytes_limit(void);

#endif
