/* idcheck.dns(name, qtype='A', timeout=5.0): one DNS lookup through libowfat
 * (dns_transmit_* + iopause) with a deadline of its own, the GIL released
 * while it waits. The resolvers are those of DNSCACHEIP, else the
 * nameserver lines of /etc/resolv.conf (dns_resolvconfip), as for every
 * djbdns-style program in the chain.
 *
 * Returns the answer section's records of that type (class IN), in the
 * server's order:
 *   'A', 'AAAA'  address strings: '192.0.2.1', '2001:db8::1'
 *   'MX'         (preference, 'exchange.name') tuples
 *   'PTR'        'target.name' strings
 *   'TXT'        tuples of bytes, one item per character-string
 * [] for NXDOMAIN or no records of that type.
 * Raises idcheck.DNSTimeout (a subclass of idcheck.DNSError, an OSError)
 * when the deadline passes, idcheck.DNSError when every server failed
 * (SERVFAIL, REFUSED, unreachable) or the answer is malformed, ValueError
 * for a name DNS cannot carry or an unknown type. */
#ifndef PYTHON_DNS_H
#define PYTHON_DNS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *idcheck_dns(PyObject *self, PyObject *args, PyObject *kwargs);

/* Adds DNSError and DNSTimeout to the module: 0 ok, -1 with an error set. */
int idcheck_dns_add_types(PyObject *module);

#define IDCHECK_DNS_DOC \
  "dns(name, qtype='A', timeout=5.0): the records of type qtype (A, AAAA, MX, " \
  "PTR, TXT) for name, from the resolvers in DNSCACHEIP; [] when there are none. " \
  "Raises idcheck.DNSTimeout after timeout seconds, idcheck.DNSError on " \
  "server failure."

#endif
