/* TLS through a UCSPI-TLS end in front of the proxy (qmail-idcheck-tls,
 * fehcom's sslserver -n, skarnet's s6-ucspitlsd; the exchange is written out
 * in lib/ucspi_tls.h). The proxy never holds a TLS library or the key: it
 * asks the TLS end to start TLS, reads the connection's details back, and
 * from then on talks to the client through the TLS end's two pipes.
 *
 * Implicit TLS (qmail-idcheck-tls -i, SMTPS) needs nothing here but the
 * details, which the TLS end puts in the environment: TLS is active from
 * the start and STARTTLS is not offered. */
#ifndef TLS_H
#define TLS_H
#include "stralloc.h"

/* At the start, before prog runs: the three descriptors (made close-on-exec,
 * and removed from the environment prog gets), or implicit TLS. */
void tls_setup(void);

int tls_possible(void);   /* this session has or can have TLS */
int tls_offered(void);    /* STARTTLS may be offered now */
int tls_active(void);

/* After "220 Ready to start TLS" went out: asks the TLS end to start TLS
 * and waits for the details (they go to the environment, SSL_*, where
 * checkID sees them). 1: the client is now on the TLS pipes. 0: the
 * handshake failed or timed out (logged): the connection is gone. */
int tls_start(void);

/* "TLSv1.3 cipher=TLS_AES_256_GCM_SHA384": the trace qmail-idcheck-queue
 * puts above qmail-smtpd's Received line (a Received-TLS field), or 0. */
const char *tls_trace(void);

#endif
