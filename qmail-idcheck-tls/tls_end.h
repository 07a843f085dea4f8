/* The TLS side of one connection (libtls), for qmail-idcheck-tls-io:
 * configure from the PEM files in memory, the server handshake under a
 * deadline, the UCSPI-TLS details, and the relay between the network
 * (fds 0/1) and the app's two pipes. */
#ifndef TLS_END_H
#define TLS_END_H
#include <stddef.h>
#include "deadline.h"
#include "pem_file.h"
#include "stralloc.h"

struct tls;

struct tls_end {
  struct tls *server;      /* the configured context */
  struct tls *conn;        /* this connection's, from the handshake on */
  int net_in, net_out;     /* the client: fd 0 and fd 1 (usually one socket) */
  int in_is_socket, out_is_socket;  /* recv/send with MSG_DONTWAIT, or read/write */
  size_t moved;            /* bytes through net_in/net_out: progress for the idle limit */
  size_t sent;             /* of them, bytes through net_out */
  int net_eof;             /* the client's side of the connection ended */
};

/* 1, or 0 with why set. The key is copied into the TLS library; the caller
 * wipes its own copy. */
int tls_end_configure(struct tls_end *t, const struct pem_file *cert, const struct pem_file *key,
                      stralloc *why);

/* 1 when the handshake is done; 0 with why set (failed or past the deadline). */
int tls_end_handshake(struct tls_end *t, deadline_t deadline, stralloc *why);

/* The UCSPI-TLS details of the handshake (lib/ucspi_tls.h), the empty entry
 * that ends them included. */
int tls_end_details(struct tls_end *t, stralloc *details);

/* Relays until both directions have ended: app_in (what the app writes) to
 * the client, the client to app_out (what the app reads). EOF from the app:
 * close_notify and the connection half-closed; EOF from the client: app_out
 * closed. idle_ms without a byte moving ends it, as does an error (logged).
 * Closes app_in and app_out. */
void tls_end_relay(struct tls_end *t, int app_in, int app_out, int64_t idle_ms);

/* Shuts the connection down both ways (every holder of the socket sees it). */
void tls_end_hang_up(struct tls_end *t);

void tls_end_free(struct tls_end *t);

#endif
