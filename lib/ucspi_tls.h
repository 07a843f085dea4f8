/* UCSPI-TLS: how a program asks the TLS end of its connection to start TLS
 * (SMTP's STARTTLS) without a TLS library of its own. qmail-idcheck-tls is
 * the TLS end; qmail-idcheck (or any UCSPI-TLS application) is the app.
 * The same interface as fehcom's ucspi-tls(2) (sslserver -n) and skarnet's
 * s6-ucspitlsd, so an app written for one works with all three.
 *
 * The TLS end runs the app with three variables, each a descriptor number:
 *   SSLCTLFD    the app's end of the control channel (a Unix stream socketpair)
 *   SSLREADFD   a pipe: the app reads what the client sent, decrypted
 *   SSLWRITEFD  a pipe: the app writes what the client is to get
 * Until TLS starts the app talks to the client in clear on its fds 0 and 1,
 * which are the network connection itself (no copy in between).
 *
 * The exchange on SSLCTLFD:
 *   app -> TLS end   one byte: 'Y' start TLS and send the details back,
 *                              'y' start TLS, no details (SSLCTLFD is closed
 *                                  at once)
 *   (the TLS end takes over fds 0/1 and does the handshake, under a deadline)
 *   TLS end -> app   after 'Y' and a completed handshake, the details:
 *                      NAME=value \0 NAME=value \0 ... \0
 *                    entries each ended by NUL, then one empty entry (so the
 *                    details end in two NULs); then EOF (the TLS end closes
 *                    its end, as s6-ucspitlsd does; sslserver keeps it open,
 *                    so a reader stops at the empty entry).
 *   A failed handshake: EOF before the empty entry, and the TLS end has shut
 *   the connection down; the app ends the session.
 * From the command on, the app uses only SSLREADFD and SSLWRITEFD: EOF on
 * SSLREADFD is the client's end; the app closing SSLWRITEFD makes the TLS end
 * send close_notify and half-close the connection. An app that closes
 * SSLCTLFD (or exits) without a command never gets TLS.
 *
 * The details qmail-idcheck-tls sends, in this order (s6-tlsd's names;
 * fehcom's sslserver sends mod_ssl's: only SSL_PROTOCOL and SSL_CIPHER are
 * common to all three):
 *   SSL_PROTOCOL            TLSv1.2 or TLSv1.3
 *   SSL_CIPHER              the cipher suite, OpenSSL's name
 *   SSL_TLS_SNI_SERVERNAME  the name the client asked for (SNI), if any
 *   SSL_PEER_CERT_HASH      "SHA256:" and the hex digest of the client's
 *                           certificate (DER), if it offered one
 *   SSL_PEER_CERT_SUBJECT   its subject, OpenSSL's one-line form
 *                           ("/C=DE/O=Example/CN=client.example"); the client
 *                           certificate is not verified
 * Values: bytes outside 32..126 become '?'; cut at UCSPI_TLS_VALUE_MAX.
 * s6-ucspitlsd sends "NAME\0" (no '=') for a value it does not have: a reader
 * takes an entry without '=' as "not set". */
#ifndef UCSPI_TLS_H
#define UCSPI_TLS_H
#include <stddef.h>
#include "stralloc.h"

#define UCSPI_TLS_CTLFD "SSLCTLFD"
#define UCSPI_TLS_READFD "SSLREADFD"
#define UCSPI_TLS_WRITEFD "SSLWRITEFD"

#define UCSPI_TLS_START_DETAILS 'Y'
#define UCSPI_TLS_START 'y'

#define UCSPI_TLS_VALUE_MAX 1024
#define UCSPI_TLS_DETAILS_MAX 4096   /* all of them, the final NUL included */

/* The names qmail-idcheck-tls may send, in order; NULL-terminated. */
extern const char *const ucspi_tls_detail_names[];

/* Appends NAME=value and its NUL, value sanitized and cut at max bytes. */
int ucspi_tls_detail_cat(stralloc *details, const char *name, const char *value, size_t max);
/* Appends the empty entry that ends the details. */
int ucspi_tls_details_end(stralloc *details);

#endif
