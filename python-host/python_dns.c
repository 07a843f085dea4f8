/* idcheck.dns: see python_dns.h. libowfat's blocking dns_* calls can wait
 * about a minute for a silent server; here every lookup has its own
 * deadline, and the interpreter lock is released while it waits. What the
 * answer holds for the name is lib/dns_records' business; here it becomes
 * Python objects. */
#include "python_dns.h"
#include "dns_records.h"
#include "dns_seed.h"
#include "dns.h"
#include "iopause.h"
#include "taia.h"
#include "stralloc.h"
#include "deadline.h"
#include <pthread.h>
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MAX 300.0       /* seconds; a longer wait is a policy bug */

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

/* libowfat's dns_random (query ids, source ports) keeps static state with no
 * lock, and dns_transmit_start and dns_transmit_get call it: threads of a
 * policy that look up at once take turns there, never in the wait. */
static pthread_mutex_t random_lock = PTHREAD_MUTEX_INITIALIZER;

/* Runs one started transmission until it is answered, fails or the deadline
 * passes. Called without the GIL: touches tx, and libowfat's random state
 * under random_lock.
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
    pthread_mutex_lock(&random_lock);
    int r = dns_transmit_get(tx, &x, &stamp);
    pthread_mutex_unlock(&random_lock);
    if (r == 1) return DNS_ANSWERED;
    if (r == -1) return now_ms() >= deadline ? DNS_TIMEDOUT : DNS_FAILED;
    if (tx->udploop >= 2 && tx->tcpstate == 0 && now_ms() - started < 1000) return DNS_FAILED;
  }
}

/* ---- the answer as Python objects ---- */

/* A name as text (dns_records.h) as a str: bytes that are not UTF-8
 * become surrogates, so it looks up again as it is. */
static PyObject *name_str(const char *s, size_t len)
{
  return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "surrogateescape");
}

/* TXT: a tuple of bytes, one per character-string (they fit: checked). */
static PyObject *txt_tuple(const char *s, size_t len)
{
  size_t n = 0;
  for (size_t i = 0; i < len; i += 1 + (unsigned char)s[i]) ++n;
  PyObject *t = PyTuple_New((Py_ssize_t)n);
  for (size_t i = 0, k = 0; t && i < len; i += 1 + (unsigned char)s[i], ++k) {
    PyObject *b = PyBytes_FromStringAndSize(s + i + 1, (unsigned char)s[i]);
    if (!b) Py_CLEAR(t);
    else PyTuple_SET_ITEM(t, (Py_ssize_t)k, b);
  }
  return t;
}

static PyObject *value_object(const char *qtype, const struct dns_records *rs,
                              const struct dns_value *v)
{
  const char *s = rs->text.s + v->at;
  char text[INET6_ADDRSTRLEN];
  if (!memcmp(qtype, DNS_T_A, 2) || !memcmp(qtype, DNS_T_AAAA, 2)) {
    if (!inet_ntop(v->len == 16 ? AF_INET6 : AF_INET, s, text, sizeof text)) {
      PyErr_SetString(dns_error, "malformed answer");
      return NULL;
    }
    return PyUnicode_FromString(text);
  }
  if (!memcmp(qtype, DNS_T_MX, 2)) {
    PyObject *exchange = name_str(s, v->len);
    return exchange ? Py_BuildValue("(IN)", v->pref, exchange) : NULL;
  }
  if (!memcmp(qtype, DNS_T_PTR, 2)) return name_str(s, v->len);
  return txt_tuple(s, v->len);
}

static PyObject *records_list(const char *qtype, const struct dns_records *rs)
{
  PyObject *list = PyList_New((Py_ssize_t)rs->n);
  for (size_t i = 0; list && i < rs->n; ++i) {
    PyObject *v = value_object(qtype, rs, &rs->v[i]);
    if (!v) Py_CLEAR(list);
    else PyList_SET_ITEM(list, (Py_ssize_t)i, v);
  }
  return list;
}

/* ---- idcheck.dns ---- */

PyObject *idcheck_dns(PyObject *self, PyObject *args, PyObject *kwargs)
{
  static char *kwlist[] = { "name", "qtype", "timeout", NULL };
  PyObject *nameobj, *bytes = NULL, *shown = NULL, *result = NULL;
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

  /* A str goes out as UTF-8, surrogates back to the bytes they stand for:
   * the client's own bytes for a name made of what it sent (texts from the
   * client reach Python with surrogateescape), the form names in answers come back in.
   * Turning a U-label into an A-label (IDNA) is the caller's choice. */
  if (PyUnicode_Check(nameobj)) {
    bytes = PyUnicode_AsEncodedString(nameobj, "utf-8", "surrogateescape");
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
  int named = dns_name_wire(PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes), &dn);
  if (named <= 0) {
    if (named < 0) PyErr_NoMemory();
    else PyErr_SetString(PyExc_ValueError, "idcheck.dns: not a domain name DNS can carry");
    goto out;
  }
  /* for the messages: any byte may be in the name now */
  shown = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes), "backslashreplace");
  if (!shown) goto out;
  if (!dns_seed()) {
    PyErr_SetString(dns_error, "no random bytes for the query id");
    goto out;
  }
  if (dns_resolvconfip(servers) == -1) {
    PyErr_SetString(dns_error, "no resolver (DNSCACHEIP, /etc/resolv.conf)");
    goto out;
  }

  int64_t ms = (int64_t)(timeout * 1000.0 + 0.5);
  deadline_t deadline = deadline_in(ms > 0 ? ms : 1);
  unsigned int aliases = 0;
  int again;
  do {     /* once, and once more per alias an answer ends at (DNS_WALK_AGAIN) */
    struct dns_transmit tx;
    enum outcome oc;
    memset(&tx, 0, sizeof tx);
    again = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&random_lock);
    int started = dns_transmit_start(&tx, servers, 1, dn, qtype,
                                     "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    pthread_mutex_unlock(&random_lock);
    oc = started == -1 ? DNS_FAILED : transmit_wait(&tx, deadline);
    Py_END_ALLOW_THREADS

    if (oc == DNS_ANSWERED) {
      struct dns_records rs = { 0 };
      switch (dns_records_owned(qtype, tx.packet, tx.packetlen, &dn, &aliases, &rs)) {
        case DNS_WALK_OK: result = records_list(qtype, &rs); break;
        case DNS_WALK_AGAIN: again = 1; break;
        case DNS_WALK_MALFORMED: PyErr_SetString(dns_error, "malformed answer"); break;
        case DNS_WALK_LOOP:
          PyErr_Format(dns_error, "lookup of %U %s: more than %d aliases", shown, qtname,
                       DNS_ALIASES_MAX);
          break;
        case DNS_WALK_NOMEM: PyErr_NoMemory(); break;
      }
      dns_records_free(&rs);
    } else if (oc == DNS_TIMEDOUT)
      PyErr_Format(dns_timeout, "no answer for %U %s within %lld ms", shown, qtname, (long long)ms);
    else
      PyErr_Format(dns_error, "lookup of %U %s failed", shown, qtname);
    dns_transmit_free(&tx);
  } while (again);
out:
  free(dn);
  Py_XDECREF(bytes);
  Py_XDECREF(shown);
  return result;
}
