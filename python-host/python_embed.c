#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "python_embed.h"
#include "python_log.h"
#include "python_module.h"
#include "netstring.h"
#include "policy_wire.h"
#include "sanitize.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef IDCHECK_PYDIR
#error "IDCHECK_PYDIR must be defined (see python-host/module.mk)"
#endif

#define REASON_MAX 500          /* a FAULT reason is one line, at most this long */

static int py_ready;            /* the interpreter runs and idcheck is loaded */
static char init_fault[REASON_MAX];
static int policy_tried;        /* the policy is looked up once, at the first call */
static PyObject *policy_func;
static char policy_fault[REASON_MAX];
static char reason_buf[REASON_MAX];

/* ---- reasons and tracebacks ---- */

/* "Type: message" of an exception already fetched (value may be NULL). */
static void exception_summary(PyObject *value, char *buf, size_t size)
{
  const char *type = value ? Py_TYPE(value)->tp_name : "unknown";
  const char *dot = strrchr(type, '.');   /* builtins have no module part */
  if (dot) type = dot + 1;
  PyObject *s = value ? PyObject_Str(value) : NULL;
  PyObject *b = s ? PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace") : NULL;
  if (!b) PyErr_Clear();
  if (b && PyBytes_GET_SIZE(b) > 0)
    snprintf(buf, size, "%s: %.*s", type,
             (int)(PyBytes_GET_SIZE(b) > (Py_ssize_t)size ? (Py_ssize_t)size : PyBytes_GET_SIZE(b)),
             PyBytes_AS_STRING(b));
  else
    snprintf(buf, size, "%s", type);
  Py_XDECREF(s);
  Py_XDECREF(b);
}

/* Take the exception in flight: its summary goes to buf (after prefix), the
 * traceback to the log, each line with the policy prefix. PyErr_Display, not
 * PyErr_Print: PyErr_Print would exit the process on SystemExit. */
static void exception_take(const char *prefix, char *buf, size_t size)
{
  PyObject *type, *value, *tb;
  char summary[REASON_MAX];
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb && value) PyException_SetTraceback(value, tb);
  exception_summary(value, summary, sizeof summary);
  snprintf(buf, size, "%s%s", prefix, summary);

  /* sys.stderr is ours unless the policy replaced it: use our writer anyway */
  PyObject *old = PySys_GetObject("stderr");
  Py_XINCREF(old);
  if (type && PySys_SetObject("stderr", idcheck_traceback_writer()) == 0) {
    PyErr_Display(type, value, tb);
    PySys_SetObject("stderr", old);
  }
  PyErr_Clear();
  Py_XDECREF(old);
  idcheck_writers_flush();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
}

/* ---- start ---- */

static int start_failed(const char *what, PyStatus st)
{
  if (st.func)
    snprintf(init_fault, sizeof init_fault, "python init failed: %s: %s: %s",
             what, st.func, st.err_msg ? st.err_msg : "error");
  else
    snprintf(init_fault, sizeof init_fault, "python init failed: %s: %s",
             what, st.err_msg ? st.err_msg : "error");
  log_python(init_fault);
  return 0;
}

static PyStatus path_append(PyConfig *config, const char *s, size_t len)
{
  char *copy = strndup(s, len);
  if (!copy) return PyStatus_NoMemory();
  wchar_t *w = Py_DecodeLocale(copy, NULL);   /* UTF-8, surrogateescape */
  free(copy);
  if (!w) return PyStatus_Error("cannot decode a sys.path entry");
  PyStatus st = PyWideStringList_Append(&config->module_search_paths, w);
  PyMem_RawFree(w);
  return st;
}

static PyStatus paths_set(PyConfig *config)
{
  PyStatus st = PyStatus_Ok();
  const char *pp = getenv("IDCHECK_PYTHONPATH");
  if (!pp) pp = IDCHECK_PYDIR;
  config->module_search_paths_set = 1;
  for (const char *p = pp; ; ) {
    const char *colon = strchr(p, ':');
    size_t len = colon ? (size_t)(colon - p) : strlen(p);
    if (len) {
      st = path_append(config, p, len);
      if (PyStatus_Exception(st)) return st;
    }
    if (!colon) break;
    p = colon + 1;
  }
  const char *fixed[3] = { PY_STDLIB, PY_DYNLOAD, PY_DISTPKG };
  for (int i = 0; i < 3; ++i) {
    st = path_append(config, fixed[i], strlen(fixed[i]));
    if (PyStatus_Exception(st)) return st;
  }
  return st;
}

static PyStatus config_fill(PyConfig *config)
{
  static char *const argv[] = { "qmail-idcheck-python", NULL };
  config->site_import = 0;
  config->user_site_directory = 0;
  config->use_environment = 0;
  config->install_signal_handlers = 0;  /* SIGTERM and SIGPIPE act plainly */
  config->write_bytecode = 0;
  config->pathconfig_warnings = 0;
  config->buffered_stdio = 0;   /* nothing is lost when we _exit */
  config->parse_argv = 0;
  PyStatus st = PyConfig_SetBytesArgv(config, 1, argv);
  if (PyStatus_Exception(st)) return st;
  /* print() must not fail on text the client sent */
  st = PyConfig_SetString(config, &config->stdio_encoding, L"utf-8");
  if (PyStatus_Exception(st)) return st;
  st = PyConfig_SetString(config, &config->stdio_errors, L"backslashreplace");
  if (PyStatus_Exception(st)) return st;
  return paths_set(config);
}

int py_start(void)
{
  PyPreConfig pre;
  PyPreConfig_InitIsolatedConfig(&pre);
  pre.utf8_mode = 1;            /* file names and paths: UTF-8, surrogateescape */
  PyStatus st = Py_PreInitialize(&pre);
  if (PyStatus_Exception(st)) return start_failed("preinitialize", st);
  if (PyImport_AppendInittab("idcheck", idcheck_module_init) < 0)
    return start_failed("idcheck module", PyStatus_Error("PyImport_AppendInittab failed"));

  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  st = config_fill(&config);
  if (PyStatus_Exception(st)) {
    PyConfig_Clear(&config);
    return start_failed("configure", st);
  }
  st = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(st)) return start_failed("initialize", st);

  if (idcheck_module_load() < 0) {
    exception_take("python init failed: idcheck module: ", init_fault, sizeof init_fault);
    log_python(init_fault);
    return 0;
  }
  py_ready = 1;
  return 1;
}

void *py_io_begin(void)
{
  return py_ready ? PyEval_SaveThread() : NULL;
}

void py_io_end(void *state)
{
  if (state) PyEval_RestoreThread(state);
}

/* ---- the policy ---- */

static void policy_load(void)
{
  const char *modname = getenv("IDCHECK_MODULE");
  const char *funcname = getenv("IDCHECK_FUNCTION");
  char prefix[300];
  if (!modname || !*modname) modname = "checkid";
  if (!funcname || !*funcname) funcname = "checkID";
  policy_tried = 1;

  PyObject *mod = PyImport_ImportModule(modname);
  if (!mod) {
    snprintf(prefix, sizeof prefix, "cannot import policy module %.200s: ", modname);
    exception_take(prefix, policy_fault, sizeof policy_fault);
    log_python(policy_fault);
    return;
  }
  PyObject *f = PyObject_GetAttrString(mod, funcname);
  Py_DECREF(mod);
  if (!f) {
    PyErr_Clear();
    snprintf(policy_fault, sizeof policy_fault, "policy module %.200s has no %.200s",
             modname, funcname);
  } else if (!PyCallable_Check(f)) {
    Py_DECREF(f);
    snprintf(policy_fault, sizeof policy_fault, "policy %.200s.%.200s is not callable",
             modname, funcname);
  } else {
    policy_func = f;
    return;
  }
  log_python(policy_fault);
}

int py_preload(void)
{
  if (!py_ready) return 0;
  if (!policy_tried) {
    policy_load();
    idcheck_writers_flush();
  }
  return policy_func != NULL;
}

/* ---- arguments ---- */

static PyObject *str_from(const char *s, size_t len)
{
  return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "surrogateescape");
}

static PyObject *opt_str(const struct wire_opt *o)
{
  if (!o->present) return Py_NewRef(Py_None);
  return str_from(o->s, o->len);
}

static PyObject *list_str(const struct wire_list *l)
{
  PyObject *list = PyList_New(0);
  const char *item;
  size_t ilen, pos = 0;
  while (list && wire_list_next(l, &pos, &item, &ilen)) {
    PyObject *s = str_from(item, ilen);
    if (!s || PyList_Append(list, s) < 0) Py_CLEAR(list);
    Py_XDECREF(s);
  }
  return list;
}

static PyObject *args_build(const struct wire_request *rq)
{
  PyObject *args = PyTuple_New(rq->nargs);
  if (!args) return NULL;
  PyObject *a[7] = { NULL };
  a[0] = opt_str(&rq->ip);
  a[1] = opt_str(&rq->id);
  a[2] = opt_str(&rq->helo);
  a[3] = opt_str(&rq->sender);
  if (rq->nargs >= 5) a[4] = list_str(&rq->rcpts);
  if (rq->nargs >= 7) {
    a[5] = list_str(&rq->hdrs);
    a[6] = rq->body.present
         ? PyBytes_FromStringAndSize(rq->body.s, (Py_ssize_t)rq->body.len)
         : Py_NewRef(Py_None);
  }
  int ok = 1;
  for (int i = 0; i < rq->nargs; ++i) {
    if (!a[i]) ok = 0;
    else PyTuple_SET_ITEM(args, i, a[i]);   /* steals */
  }
  if (!ok) Py_CLEAR(args);   /* the tuple frees what it holds; NULL slots are fine */
  return args;
}

/* ---- the reply ---- */

#define MALFORMED "malformed return value: "

static int reply_fault(stralloc *out, const char *reason)
{
  static struct policy_verdict v;   /* FAULT: no code, xcode or headers */
  v.action = ACT_FAULT;
  v.text.len = 0;
  return sanitize_cats(&v.text, reason, REASON_MAX) && wire_reply_encode(out, &v);
}

/* Conversion steps return NULL when done, else a FAULT reason; IN_FLIGHT
 * says a Python exception is set and is the reason. */
static const char IN_FLIGHT[] = "exception";

/* A str as UTF-8 with surrogateescape: a new bytes object in *b. */
static const char *str_bytes(PyObject *s, const char *what, PyObject **b)
{
  *b = PyUnicode_AsEncodedString(s, "utf-8", "surrogateescape");
  if (*b) return NULL;
  if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return IN_FLIGHT;
  PyErr_Clear();
  snprintf(reason_buf, sizeof reason_buf, MALFORMED "%s cannot be encoded as UTF-8", what);
  return reason_buf;
}

#define BYTES(b) PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b)

/* A str as one netstring, UTF-8 with surrogateescape. */
static const char *put_str(stralloc *out, PyObject *s, const char *what)
{
  PyObject *b;
  const char *why = str_bytes(s, what, &b);
  if (why) return why;
  int ok = netstring_catb(out, BYTES(b));
  Py_DECREF(b);
  return ok ? NULL : "out of memory";
}

static int is_empty_seq(PyObject *o)
{
  return (PyTuple_Check(o) && PyTuple_GET_SIZE(o) == 0)
      || (PyList_Check(o) && PyList_GET_SIZE(o) == 0);
}

/* Fields 2..4: code, xcode, text. None or () gives three empty fields. */
static const char *put_smtp_reply(stralloc *out, PyObject *r)
{
  if (r == Py_None || is_empty_seq(r))
    return netstring_cats(out, "") && netstring_cats(out, "") && netstring_cats(out, "")
         ? NULL : "out of memory";
  if (!(PyTuple_Check(r) || PyList_Check(r)) || PySequence_Fast_GET_SIZE(r) != 3)
    return MALFORMED "reply is not None or (code, xcode, text)";
  PyObject *code = PySequence_Fast_GET_ITEM(r, 0);
  PyObject *xcode = PySequence_Fast_GET_ITEM(r, 1);
  PyObject *text = PySequence_Fast_GET_ITEM(r, 2);
  if (!PyLong_Check(code) || PyBool_Check(code))
    return MALFORMED "reply code is not an int";
  int overflow;
  long c = PyLong_AsLongAndOverflow(code, &overflow);
  if (c == -1 && PyErr_Occurred()) return IN_FLIGHT;
  if (overflow || c < 0 || c > 999) return MALFORMED "reply code is not in 0..999";
  if (xcode != Py_None && !PyUnicode_Check(xcode))
    return MALFORMED "reply xcode is not a str or None";
  if (!PyUnicode_Check(text)) return MALFORMED "reply text is not a str";

  char num[8];
  snprintf(num, sizeof num, "%ld", c);
  if (!netstring_cats(out, num)) return "out of memory";
  const char *why = xcode == Py_None ? (netstring_cats(out, "") ? NULL : "out of memory")
                                     : put_str(out, xcode, "reply xcode");
  return why ? why : put_str(out, text, "reply text");
}

static const char *put_headers(stralloc *out, PyObject *h)
{
  size_t list = netstring_open(out);
  if (list == (size_t)-1) return "out of memory";
  if (h != Py_None) {
    if (!PyTuple_Check(h) && !PyList_Check(h))
      return MALFORMED "headers is not a list or None";
    /* a list may change under us only if a label's encoding runs Python code,
     * which str never does; still, index against the current size */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(h); ++i) {
      PyObject *d = PySequence_Fast_GET_ITEM(h, i);
      PyObject *label = PyDict_Check(d) ? PyDict_GetItemString(d, "label") : NULL;
      PyObject *text = PyDict_Check(d) ? PyDict_GetItemString(d, "text") : NULL;
      if (!label || !text || !PyUnicode_Check(label) || !PyUnicode_Check(text)) {
        snprintf(reason_buf, sizeof reason_buf,
                 MALFORMED "header %zd is not a dict with str 'label' and 'text'", i);
        return reason_buf;
      }
      Py_INCREF(label);
      Py_INCREF(text);
      PyObject *lb = NULL, *tb = NULL;
      const char *why = str_bytes(label, "header label", &lb);
      if (!why) why = str_bytes(text, "header text", &tb);
      if (!why && !wire_header_cat(out, BYTES(lb), BYTES(tb))) why = "out of memory";
      Py_XDECREF(lb);
      Py_XDECREF(tb);
      Py_DECREF(label);
      Py_DECREF(text);
      if (why) return why;
    }
  }
  return netstring_close(out, list) ? NULL : "out of memory";
}

/* The optional fourth element: changes to the message's own header fields,
 * [{'field': i, 'rename': 'New-Name:'} or {'field': i, 'remove': True}, ...]
 * as field 6 (lib/policy_wire.h); nothing when there are none. */
static const char *put_edits(stralloc *out, PyObject *e)
{
  if (e == Py_None || is_empty_seq(e)) return NULL;
  if (!PyTuple_Check(e) && !PyList_Check(e)) return MALFORMED "edits is not a list or None";
  size_t list = netstring_open(out);
  if (list == (size_t)-1) return "out of memory";
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(e); ++i) {
    PyObject *d = PySequence_Fast_GET_ITEM(e, i);
    PyObject *field = PyDict_Check(d) ? PyDict_GetItemString(d, "field") : NULL;
    PyObject *rename = PyDict_Check(d) ? PyDict_GetItemString(d, "rename") : NULL;
    PyObject *remove = PyDict_Check(d) ? PyDict_GetItemString(d, "remove") : NULL;
    long n = field && PyLong_Check(field) && !PyBool_Check(field) ? PyLong_AsLong(field) : -1;
    if (n == -1 && PyErr_Occurred()) PyErr_Clear();
    if (n < 0 || (rename ? !PyUnicode_Check(rename) || remove : remove != Py_True)) {
      snprintf(reason_buf, sizeof reason_buf, MALFORMED "edit %zd is not a dict with an int "
               "'field' and either a str 'rename' or 'remove': True", i);
      return reason_buf;
    }
    char num[24];
    snprintf(num, sizeof num, "%ld", n);
    Py_XINCREF(rename);
    PyObject *lb = NULL;
    const char *why = rename ? str_bytes(rename, "edit label", &lb) : NULL;
    if (!why && lb && PyBytes_GET_SIZE(lb) == 0) {
      /* on the wire an empty label means "remove": never by mistake */
      snprintf(reason_buf, sizeof reason_buf, MALFORMED "edit %zd renames to an empty name", i);
      why = reason_buf;
    }
    if (!why && !wire_edit_cat(out, num, strlen(num), "", 0, lb ? PyBytes_AS_STRING(lb) : "",
                               lb ? (size_t)PyBytes_GET_SIZE(lb) : 0))
      why = "out of memory";
    Py_XDECREF(lb);
    Py_XDECREF(rename);
    if (why) return why;
  }
  return netstring_close(out, list) ? NULL : "out of memory";
}

/* The policy's return value, shape only, as a reply frame. */
static const char *reply_from_result(stralloc *out, PyObject *res)
{
  Py_ssize_t n = PyTuple_Check(res) || PyList_Check(res) ? PySequence_Fast_GET_SIZE(res) : 0;
  if (n != 3 && n != 4)
    return MALFORMED "expected (action, reply, headers) or (action, reply, headers, edits)";
  /* hold the items: a list's own slots are not ours to rely on */
  PyObject *action = Py_NewRef(PySequence_Fast_GET_ITEM(res, 0));
  PyObject *reply = Py_NewRef(PySequence_Fast_GET_ITEM(res, 1));
  PyObject *headers = Py_NewRef(PySequence_Fast_GET_ITEM(res, 2));
  PyObject *edits = n == 4 ? Py_NewRef(PySequence_Fast_GET_ITEM(res, 3)) : Py_NewRef(Py_None);
  const char *why = NULL;
  size_t frame;
  if (!wire_reply_begin(out, &frame)) why = "out of memory";
  else if (!PyUnicode_Check(action)) why = MALFORMED "action is not a str";
  if (!why) why = put_str(out, action, "action");
  if (!why) why = put_smtp_reply(out, reply);
  if (!why) why = put_headers(out, headers);
  if (!why) why = put_edits(out, edits);
  int end = why ? 1 : wire_reply_end(out, frame);
  if (!end) why = "out of memory";
  if (end < 0) why = MALFORMED "the reply is too large";
  Py_DECREF(action);
  Py_DECREF(reply);
  Py_DECREF(headers);
  Py_DECREF(edits);
  return why;
}

/* ---- one call ---- */

static const char *policy_run(const struct wire_request *rq, stralloc *out)
{
  /* refreshed first, so the policy's import sees the first call's environment */
  if (idcheck_module_refresh(rq) < 0) return IN_FLIGHT;
  if (!policy_tried) policy_load();
  if (!policy_func) return policy_fault;
  PyObject *args = args_build(rq);
  if (!args) return IN_FLIGHT;
  PyObject *res = PyObject_Call(policy_func, args, NULL);
  Py_DECREF(args);
  /* SystemExit and KeyboardInterrupt are faults like any exception: they
   * never reach PyErr_Print, which would end the process on SystemExit. */
  if (!res) return IN_FLIGHT;
  const char *why = reply_from_result(out, res);
  Py_DECREF(res);
  return why;
}

int py_serve(const char *req, size_t len, stralloc *out)
{
  struct wire_request rq;
  if (!wire_request_decode(req, len, &rq)) return 0;
  size_t mark = out->len;
  const char *why = py_ready ? policy_run(&rq, out) : init_fault;
  if (py_ready) {
    if (why == IN_FLIGHT) {
      exception_take("exception: ", reason_buf, sizeof reason_buf);
      why = reason_buf;
    }
    idcheck_writers_flush();
  }
  if (!why) return 1;
  out->len = mark;
  return reply_fault(out, why) ? 1 : -1;
}
