/* idcheck.dns: see python_dns.h. libowfat's blocking dns_* calls can wait
 * about a minute for a silent server; here every lookup has its own
 * deadline, and the interpreter lock is released while it waits. */
#include "python_dns.h"
#include "dns_seed.h"
#include "dns.h"
#include "iopause.h"
#include "taia.h"
#include "stralloc.h"
#include "deadline.h"
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MAX 300.0       /* seconds; a longer wait is a policy bug */
#define NAME_MAX_LEN 1000       /* before dns_domain_fromdot's own checks */

static PyObject *dns_error;     /* idcheck.DNSError */
static PyObject *dns_timeout;   /* idcheck.DNSTimeout */

struct qtype_name { const char *name; const char *code; };
static const struct qtype_name qtypes[] = {
  { "A", DNS_T_A }, { "AAAA", DNS_T_AAAA }, { "MX", DNS_T_MX },
  { "PTR", DNS_T_PTR }, { "TXT", DNS_T_TXT },
};

int idcheck_dns_add_types(PyObject *module)
{
  dns_error = PyErr_NewExceptionWithDoc("idcheck.DNSError",
      "A DNS lookup failed: every server failed or the answer was malformed.",
      PyExc_OSError, NULL);
  if (!dns_error) return -1;
  dns_timeout = PyErr_NewExceptionWithDoc("idcheck.DNSTimeout",
      "A DNS lookup got no answer before its deadline.", dns_error, NULL);
  if (!dns_timeout) return -1;
  if (PyModule_AddObjectRef(module, "DNSError", dns_error) < 0) return -1;
  if (PyModule_AddObjectRef(module, "DNSTimeout", dns_timeout) < 0) return -1;
  return 0;
}

/* ---- the wait ---- */

enum outcome { DNS_ANSWERED, DNS_TIMEDOUT, DNS_FAILED };

/* Runs one started transmission until it is answered, fails or the deadline
 * passes. Called without the GIL: touches nothing but tx.
 *
 * libowfat (as djbdns) resends to each server on rounds with timeouts of
 * 1, 3, 11 and 45 seconds, and on the third round it keeps waiting after a
 * SERVFAIL, REFUSED or ICMP-refused answer in case a good one follows.
 * Reaching that round within the first round's second is only possible when
 * every server answered with a failure twice: that is a failure now, not a
 * timeout at the deadline. */
static enum outcome transmit_wait(struct dns_transmit *tx, deadline_t deadline)
{
  int64_t started = now_ms();
  for (;;) {
    struct taia stamp, until, left_t;
    iopause_fd x;
    int64_t left = deadline - now_ms();
    if (left <= 0) return DNS_TIMEDOUT;
    taia_now(&stamp);
    memset(&left_t, 0, sizeof left_t);
    left_t.sec.x = (uint64_t)(left / 1000);
    left_t.nano = (uint32)((left % 1000) * 1000000);
    taia_add(&until, &stamp, &left_t);
    /* dns_transmit_io may move until earlier (its own retry timer), never later */
    memset(&x, 0, sizeof x);
    dns_transmit_io(tx, &x, &until);
    iopause(&x, 1, &until, &stamp);
    taia_now(&stamp);
    int r = dns_transmit_get(tx, &x, &stamp);
    if (r == 1) return DNS_ANSWERED;
    if (r == -1) return now_ms() >= deadline ? DNS_TIMEDOUT : DNS_FAILED;
    if (tx->udploop >= 2 && tx->tcpstate == 0 && now_ms() - started < 1000) return DNS_FAILED;
  }
}

/* ---- the answer ---- */

static unsigned int u16(const char *p)
{
  return ((unsigned int)(unsigned char)p[0] << 8) | (unsigned char)p[1];
}

static PyObject *malformed(void)
{
  PyErr_SetString(dns_error, "malformed answer");
  return NULL;
}

/* A domain name at pos in the packet as a str ("." for the root). */
static PyObject *name_at(const char *buf, unsigned int len, unsigned int pos)
{
  char *dn = 0;
  stralloc sa = {0};
  PyObject *s = NULL;
  if (!dns_packet_getname(buf, len, pos, &dn)) return malformed();
  if (!dns_domain_todot_cat(&sa, dn)) PyErr_NoMemory();
  else s = PyUnicode_DecodeUTF8(sa.s, (Py_ssize_t)sa.len, "surrogateescape");
  free(dn);
  stralloc_free(&sa);
  return s;
}

static PyObject *record_value(const char *qtype, const char *buf, unsigned int len,
                              unsigned int pos, unsigned int datalen)
{
  char text[INET6_ADDRSTRLEN];
  if (!memcmp(qtype, DNS_T_A, 2) || !memcmp(qtype, DNS_T_AAAA, 2)) {
    int v6 = !memcmp(qtype, DNS_T_AAAA, 2);
    if (datalen != (v6 ? 16u : 4u)) return malformed();
    if (!inet_ntop(v6 ? AF_INET6 : AF_INET, buf + pos, text, sizeof text)) return malformed();
    return PyUnicode_FromString(text);
  }
  if (!memcmp(qtype, DNS_T_MX, 2)) {
    if (datalen < 3) return malformed();
    PyObject *exch = name_at(buf, len, pos + 2);
    if (!exch) return NULL;
    return Py_BuildValue("(IN)", u16(buf + pos), exch);
  }
  if (!memcmp(qtype, DNS_T_PTR, 2))
    return name_at(buf, len, pos);
  /* TXT: one or more character-strings */
  PyObject *parts = PyList_New(0);
  if (!parts) return NULL;
  for (unsigned int i = 0; i < datalen; ) {
    unsigned int n = (unsigned char)buf[pos + i];
    if (i + 1 + n > datalen) {
      Py_DECREF(parts);
      return malformed();
    }
    PyObject *b = PyBytes_FromStringAndSize(buf + pos + i + 1, (Py_ssize_t)n);
    if (!b || PyList_Append(parts, b) < 0) {
      Py_XDECREF(b);
      Py_DECREF(parts);
      return NULL;
    }
    Py_DECREF(b);
    i += 1 + n;
  }
  PyObject *t = PyList_AsTuple(parts);
  Py_DECREF(parts);
  return t;
}

/* The answer section's records of qtype, class IN. */
static PyObject *answers(const char *qtype, const char *buf, unsigned int len)
{
  char header[12];
  unsigned int pos = dns_packet_copy(buf, len, 0, header, 12);
  if (!pos) return malformed();
  unsigned int count = u16(header + 6);
  pos = dns_packet_skipname(buf, len, pos);
  if (!pos) return malformed();
  pos += 4;
  if (pos > len) return malformed();
  PyObject *list = PyList_New(0);
  if (!list) return NULL;
  while (count--) {
    pos = dns_packet_skipname(buf, len, pos);
    if (!pos) goto bad;
    pos = dns_packet_copy(buf, len, pos, header, 10);
    if (!pos) goto bad;
    unsigned int datalen = u16(header + 8);
    if (datalen > len - pos) goto bad;
    if (!memcmp(header, qtype, 2) && !memcmp(header + 2, DNS_C_IN, 2)) {
      PyObject *v = record_value(qtype, buf, len, pos, datalen);
      if (!v) goto fail;
      int r = PyList_Append(list, v);
      Py_DECREF(v);
      if (r < 0) goto fail;
    }
    pos += datalen;
  }
  return list;
bad:
  malformed();
fail:
  Py_DECREF(list);
  return NULL;
}

/* ---- idcheck.dns ---- */

/* The name as bytes DNS can carry: printable ASCII, no backslash (which
 * dns_domain_fromdot would read as an escape). 0 with ValueError set. */
static int name_check(const char *s, Py_ssize_t len)
{
  if (len <= 0 || len > NAME_MAX_LEN) goto bad;
  for (Py_ssize_t i = 0; i < len; ++i) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 32 || c >= 127 || c == '\\') goto bad;
  }
  return 1;
bad:
  PyErr_SetString(PyExc_ValueError, "idcheck.dns: not a domain name DNS can carry");
  return 0;
}

PyObject *idcheck_dns(PyObject *self, PyObject *args, PyObject *kwargs)
{
  static char *kwlist[] = { "name", "qtype", "timeout", NULL };
  PyObject *nameobj, *bytes = NULL, *result = NULL;
  const char *qtname = "A", *qtype = NULL;
  double timeout = 5.0;
  char servers[256];
  char *dn = 0;
  (void)self;

  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|sd:dns", kwlist, &nameobj, &qtname, &timeout))
    return NULL;
  for (size_t i = 0; i < sizeof qtypes / sizeof qtypes[0]; ++i)
    if (!strcasecmp(qtname, qtypes[i].name)) qtype = qtypes[i].code;
  if (!qtype) {
    PyErr_Format(PyExc_ValueError, "idcheck.dns: unknown type %.20s (A, AAAA, MX, PTR, TXT)", qtname);
    return NULL;
  }
  if (!(timeout > 0) || !isfinite(timeout)) {
    PyErr_SetString(PyExc_ValueError, "idcheck.dns: timeout must be a positive number");
    return NULL;
  }
  if (timeout > TIMEOUT_MAX) timeout = TIMEOUT_MAX;

  if (PyUnicode_Check(nameobj)) {
    bytes = PyUnicode_AsEncodedString(nameobj, "ascii", "strict");
    if (!bytes) {
      PyErr_Clear();
      PyErr_SetString(PyExc_ValueError, "idcheck.dns: not a domain name DNS can carry");
      return NULL;
    }
  } else if (PyBytes_Check(nameobj)) {
    bytes = Py_NewRef(nameobj);
  } else {
    PyErr_Format(PyExc_TypeError, "idcheck.dns: name must be str or bytes, not %.100s",
                 Py_TYPE(nameobj)->tp_name);
    return NULL;
  }
  if (!name_check(PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes))) goto out;
  if (!dns_domain_fromdot(&dn, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes))
      || dns_domain_length(dn) > 255) {
    PyErr_SetString(PyExc_ValueError, "idcheck.dns: not a domain name DNS can carry");
    goto out;
  }
  if (!dns_seed()) {
    PyErr_SetString(dns_error, "no random bytes for the query id");
    goto out;
  }
  if (dns_resolvconfip(servers) == -1) {
    PyErr_SetString(dns_error, "no resolver (DNSCACHEIP, /etc/resolv.conf)");
    goto out;
  }

  struct dns_transmit tx;
  enum outcome oc;
  memset(&tx, 0, sizeof tx);
  int64_t ms = (int64_t)(timeout * 1000.0 + 0.5);
  deadline_t deadline = deadline_in(ms > 0 ? ms : 1);
  Py_BEGIN_ALLOW_THREADS
  if (dns_transmit_start(&tx, servers, 1, dn, qtype, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0") == -1)
    oc = DNS_FAILED;
  else
    oc = transmit_wait(&tx, deadline);
  Py_END_ALLOW_THREADS

  if (oc == DNS_ANSWERED)
    result = answers(qtype, tx.packet, tx.packetlen);
  else if (oc == DNS_TIMEDOUT)
    PyErr_Format(dns_timeout, "no answer for %s %s within %lld ms",
                 PyBytes_AS_STRING(bytes), qtname, (long long)ms);
  else
    PyErr_Format(dns_error, "lookup of %s %s failed", PyBytes_AS_STRING(bytes), qtname);
  dns_transmit_free(&tx);
out:
  free(dn);
  Py_XDECREF(bytes);
  return result;
}
