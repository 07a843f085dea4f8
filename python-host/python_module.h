/* The built-in module `idcheck`: what the C side gives a policy.
 *   idcheck.log(msg)   one line to the log, "qmail-idcheck: pid N policy: msg"
 *   idcheck.environ    dict: the connection's environment (str, surrogateescape)
 *   idcheck.bodysize   int: the full size of the body (Body may be cut)
 *   idcheck.hdrscut    int: header fields of the message not in Hdrs (its cap)
 *   idcheck.stage      'mail', 'rcpt' or 'data'
 *   idcheck.dns(name, qtype, timeout)  DNS lookups (python_dns.h)
 * environ, bodysize, hdrscut and stage are refreshed before every call; environ stays
 * the same dict object, so `from idcheck import environ` keeps working. */
#ifndef PYTHON_MODULE_H
#define PYTHON_MODULE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "policy_wire.h"

/* For PyImport_AppendInittab, before the interpreter starts. */
PyMODINIT_FUNC idcheck_module_init(void);

/* After the interpreter starts: import the module, and send sys.stdout and
 * sys.stderr to the log, line by line, with the policy prefix. 0 ok, -1 with
 * a Python error set. */
int idcheck_module_load(void);

/* Before each call. 0 ok, -1 with a Python error set. */
int idcheck_module_refresh(const struct wire_request *rq);

/* A log writer (a file-like object) for tracebacks: borrowed reference. */
PyObject *idcheck_traceback_writer(void);

/* Write out any partial lines the writers hold (after each call). */
void idcheck_writers_flush(void);

#endif
