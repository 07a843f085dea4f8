/* idcheck.dns(name, qtype='A', timeout=5.0): one DNS lookup through libowfat
 * (dns_transmit_* + iopause) with a deadline of its own, the GIL released
 * while it waits. The resolvers are those of DNSCACHEIP, else the
 * nameserver lines of /etc/resolv.conf (dns_resolvconfip), as for every
 * djbdns-style program in the chain.
 *
 * Returns the records of that type (class IN) the name owns, in the
 * server's order, following aliases (CNAME) as a resolver library does:
 * within the answer, and by asking again for the target when an answer
 * ends at an alias (an authoritative server's); at most 10 aliases.
 *   'A', 'AAAA'  address strings: '192.0.2.1', '2001:db8::1'
 *   'MX'         (preference, 'exchange.name') tuples
 *   'PTR'        'target.name' strings
 *   'TXT'        tuples of bytes, one item per character-string
 * [] for NXDOMAIN or no records of that type.
 *
 * A name is its labels' bytes joined by '.', any byte (no escapes): a str
 * is sent as UTF-8 with surrogates turned back into the bytes they stand
 * for (surrogateescape, as texts from the client reach Python), bytes as
 * they are; names in MX and PTR answers come back the same way, so they
 * look up again as they are. One trailing dot is allowed.
 *
 * Raises idcheck.DNSTimeout (a subclass of idcheck.DNSError, an OSError)
 * when the deadline passes, idcheck.DNSError when every server failed
 * (SERVFAIL, REFUSED, unreachable), the answer is malformed or there are
 * more than 10 aliases (a loop), ValueError for a name DNS cannot carry
 * (an empty label, a label over 63 bytes, over 255 bytes on the wire) or
 * an unknown type. */
#ifndef PYTHON_DNS_H
#define PYTHON_DNS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *idcheck_dns(PyObject *self, PyObject *args, PyObject *kwargs);

/* Adds DNSError and DNSTimeout to the module: 0 ok, -1 with an error set. */
int idcheck_dns_add_types(PyObject *module);

#define IDCHECK_DNS_DOC \
  "dns(name, qtype='A', timeout=5.0): the records of type qtype (A, AAAA, MX, " \
  "PTR, TXT) for name (aliases followed), from the resolvers in DNSCACHEIP; [] " \
  "when there are none. A name is its labels' bytes joined by '.' (a str as " \
  "UTF-8 with surrogateescape). Raises idcheck.DNSTimeout after timeout seconds, " \
  "idcheck.DNSError on server failure or a malformed answer."

#endif
