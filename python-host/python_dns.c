/* idcheck.dns: see python_dns.h. libowfat's blocking dns_* calls can wait
 * about a minute for a silent server; here every lookup has its own
 * deadline, and the interpreter lock is released while it waits. */
#include "python_dns.h"
#include "dns_answer.h"
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
#define NAME_TEXT_MAX 253       /* characters: 255 bytes on the wire */
#define LABEL_MAX 63
#define ALIASES_MAX 10          /* CNAMEs followed per lookup, as pyspf's MAX_CNAME */

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

/* A domain name at pos in the packet as a str: the bytes of each label as
 * they are, joined by '.' ("." for the root), the form idcheck.dns takes
 * back. No escapes (dns_domain_todot_cat writes "\\072" for ':', which no
 * caller would look up again); bytes that are not UTF-8 become surrogates. */
static PyObject *name_at(const char *buf, unsigned int len, unsigned int pos)
{
  char *dn = 0;
  stralloc sa = {0};
  PyObject *s = NULL;
  int ok;
  if (!dns_packet_getname(buf, len, pos, &dn)) return malformed();
  ok = *dn ? 1 : stralloc_copys(&sa, ".");
  for (const char *label = dn; ok && *label; label += 1 + (unsigned char)*label)
    ok = (!sa.len || stralloc_append(&sa, ".")) && stralloc_catb(&sa, label + 1, (unsigned char)*label);
  if (!ok) PyErr_NoMemory();
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

/* Adds to list the records of qtype (class IN) that name owns in the
 * answer, and sets *target (malloc'ed) to the first alias target (CNAME)
 * name owns, if any and not set. Records of other names are not name's and
 * are left alone. 1, or 0 with an error set. */
static int owned_records(const char *qtype, const char *buf, unsigned int len,
                         const char *name, PyObject *list, char **target)
{
  struct dns_answer a;
  struct dns_record r;
  int k;
  if (!dns_answer_start(&a, buf, len)) goto bad;
  while ((k = dns_answer_next(&a, &r)) == 1) {
    char *owner = 0;
    int wanted = !memcmp(r.type, qtype, 2), alias = !memcmp(r.type, DNS_T_CNAME, 2);
    if (memcmp(r.rclass, DNS_C_IN, 2) || (!wanted && !alias)) continue;
    if (!dns_packet_getname(buf, len, r.owner, &owner)) goto bad;
    int mine = dns_domain_equal(owner, name);
    free(owner);
    if (!mine) continue;
    if (wanted) {
      PyObject *v = record_value(qtype, buf, len, r.data, r.datalen);
      if (!v) return 0;
      int added = PyList_Append(list, v);
      Py_DECREF(v);
      if (added < 0) return 0;
    } else if (!*target && !dns_packet_getname(buf, len, r.data, target))
      goto bad;
  }
  if (k == 0) return 1;
bad:
  malformed();
  return 0;
}

/* The records of qtype that *name owns in the answer, following the aliases
 * the answer holds from *name on, as a resolver library does: a new list,
 * or NULL with an error set.
 *
 * A recursive resolver (dnscache) answers with the whole chain; an
 * authoritative server (tinydns) with the first CNAME alone. So when a
 * NOERROR answer ends at an alias whose target has nothing here, *name
 * becomes that target and *again is set: the caller asks for it. *aliases
 * counts the CNAMEs followed over the whole lookup: past ALIASES_MAX (a
 * loop ends there) the result is NULL with no error set. */
static PyObject *answers(const char *qtype, const char *buf, unsigned int len,
                         char **name, unsigned int *aliases, int *again)
{
  int followed = 0;
  *again = 0;
  for (;;) {
    char *target = 0;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    if (!owned_records(qtype, buf, len, *name, list, &target)) {
      free(target);
      Py_DECREF(list);
      return NULL;
    }
    if (PyList_GET_SIZE(list) || !target) {
      free(target);
      unsigned int rcode = (unsigned char)buf[3] & 15;    /* a header is there */
      if (!PyList_GET_SIZE(list) && followed && rcode == 0) *again = 1;
      return list;
    }
    Py_DECREF(list);
    if (++*aliases > ALIASES_MAX) {
      free(target);
      return NULL;
    }
    free(*name);
    *name = target;
    followed = 1;
  }
}

/* ---- idcheck.dns ---- */

/* The name in the wire form (length-prefixed labels), malloc'ed. Between
 * the dots are each label's bytes as they are: DNS carries any byte, and
 * SPF's macros put spaces in names on purpose; a backslash is a byte, not
 * an escape (dns_domain_fromdot would read one). One trailing dot is
 * allowed; "." is the root. Refused with ValueError, as DNS cannot carry
 * them: an empty name or label, a label over 63 bytes, a name over 255
 * bytes on the wire. */
static char *name_to_wire(const char *s, Py_ssize_t len)
{
  char *dn;
  Py_ssize_t out = 0, start = 0;
  if (len == 1 && s[0] == '.') --len;                 /* the root */
  else if (len > 1 && s[len - 1] == '.') --len;
  else if (len <= 0) goto bad;
  if (len > NAME_TEXT_MAX) goto bad;
  dn = malloc((size_t)len + 2);
  if (!dn) {
    PyErr_NoMemory();
    return NULL;
  }
  for (Py_ssize_t i = 0; len && i <= len; ++i) {
    if (i < len && s[i] != '.') continue;
    Py_ssize_t n = i - start;
    if (n < 1 || n > LABEL_MAX) {
      free(dn);
      goto bad;
    }
    dn[out++] = (char)n;
    memcpy(dn + out, s + start, (size_t)n);
    out += n;
    start = i + 1;
  }
  dn[out] = 0;
  return dn;
bad:
  PyErr_SetString(PyExc_ValueError, "idcheck.dns: not a domain name DNS can carry");
  return NULL;
}

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
   * client reach Python with surrogateescape), the form name_at returns.
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
  dn = name_to_wire(PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes));
  if (!dn) goto out;
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
  do {     /* once, and once more per alias an answer ends at (answers()) */
    struct dns_transmit tx;
    enum outcome oc;
    memset(&tx, 0, sizeof tx);
    again = 0;
    Py_BEGIN_ALLOW_THREADS
    if (dns_transmit_start(&tx, servers, 1, dn, qtype, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0") == -1)
      oc = DNS_FAILED;
    else
      oc = transmit_wait(&tx, deadline);
    Py_END_ALLOW_THREADS

    if (oc == DNS_ANSWERED) {
      result = answers(qtype, tx.packet, tx.packetlen, &dn, &aliases, &again);
      if (again) Py_CLEAR(result);
      else if (!result && !PyErr_Occurred())
        PyErr_Format(dns_error, "lookup of %U %s: more than %d aliases", shown, qtname, ALIASES_MAX);
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
