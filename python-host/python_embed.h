/* The Python side of a checkID call, independent of where frames come from
 * (qmail-idcheck-python's pipe, a qmail-idcheckd worker's connection):
 * py_start once, then py_serve per request frame's payload. */
#ifndef PYTHON_EMBED_H
#define PYTHON_EMBED_H
#include <stddef.h>
#include "stralloc.h"

/* Start the interpreter: isolated, no site, sys.path = IDCHECK_PYTHONPATH
 * (default IDCHECK_PYDIR), stdlib, lib-dynload, dist-packages. 1 ok; 0 failed,
 * logged once, and every py_serve answers FAULT with the reason. */
int py_start(void);

/* Import the policy now rather than at the first call (a warm server's
 * workers do this before they take work). 1 loaded; 0 it failed (logged; every
 * py_serve answers FAULT with the reason, as when the first call fails). */
int py_preload(void);

/* One request frame's payload in, one reply frame appended to out.
 * 1 done (possibly a FAULT reply); 0 the request is malformed (nothing
 * appended); -1 out of memory. */
int py_serve(const char *req, size_t len, stralloc *out);

/* Around blocking I/O between calls, so threads a policy started can run. */
void *py_io_begin(void);
void py_io_end(void *state);

#endif
