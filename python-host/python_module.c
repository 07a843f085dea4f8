#include "python_module.h"
#include "python_log.h"
#include "python_dns.h"
#include <string.h>

static PyObject *module;        /* the imported idcheck module */
static PyObject *environ_dict;  /* idcheck.environ, refilled per call */
static PyObject *stage_names[3];
static PyObject *traceback_writer;
static PyObject *stdout_writer;
static PyObject *stderr_writer;

/* ---- log writers: file-like objects that turn text into log lines ---- */

typedef struct {
  PyObject_HEAD
  size_t len;
  int cutting;                  /* dropping the rest of an over-long line */
  char line[LOG_LINE_MAX];
} LogWriter;

static void writer_emit(LogWriter *w)
{
  log_line("policy", w->line, w->len);
  w->len = 0;
}

static void writer_feed(LogWriter *w, const char *s, size_t len)
{
  for (size_t i = 0; i < len; ++i) {
    if (s[i] == '\n') {
      if (w->cutting) w->cutting = 0;
      else writer_emit(w);
      continue;
    }
    if (w->cutting) continue;
    w->line[w->len++] = s[i];
    if (w->len == sizeof w->line) {
      writer_emit(w);
      w->cutting = 1;
    }
  }
}

/* A str for the log as UTF-8 bytes; backslashreplace: stray surrogates show
 * as \udcxx and never fail a print(). NULL with TypeError for a non-str. */
static PyObject *log_bytes(PyObject *arg, const char *fn)
{
  if (!PyUnicode_Check(arg)) {
    PyErr_Format(PyExc_TypeError, "%s() argument must be str, not %.100s", fn,
                 Py_TYPE(arg)->tp_name);
    return NULL;
  }
  return PyUnicode_AsEncodedString(arg, "utf-8", "backslashreplace");
}

static PyObject *writer_write(PyObject *self, PyObject *arg)
{
  PyObject *b = log_bytes(arg, "write");
  if (!b) return NULL;
  writer_feed((LogWriter *)self, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
  Py_DECREF(b);
  return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
}

static PyObject *writer_flush(PyObject *self, PyObject *Py_UNUSED(ignored))
{
  LogWriter *w = (LogWriter *)self;
  if (w->len) writer_emit(w);
  w->cutting = 0;
  Py_RETURN_NONE;
}

static PyObject *writer_false(PyObject *self, PyObject *Py_UNUSED(ignored))
{
  (void)self;
  Py_RETURN_FALSE;
}

static PyObject *writer_true(PyObject *self, PyObject *Py_UNUSED(ignored))
{
  (void)self;
  Py_RETURN_TRUE;
}

static PyObject *writer_fileno(PyObject *self, PyObject *Py_UNUSED(ignored))
{
  (void)self;
  return PyLong_FromLong(2);    /* raw writes go to the log too */
}

static PyObject *writer_get_encoding(PyObject *self, void *closure)
{
  (void)self; (void)closure;
  return PyUnicode_FromString("utf-8");
}

static PyObject *writer_get_errors(PyObject *self, void *closure)
{
  (void)self; (void)closure;
  return PyUnicode_FromString("backslashreplace");
}

static PyObject *writer_get_false(PyObject *self, void *closure)
{
  (void)self; (void)closure;
  Py_RETURN_FALSE;
}

static PyMethodDef writer_methods[] = {
  {"write", writer_write, METH_O, "Write str to the log, one line per line."},
  {"flush", writer_flush, METH_NOARGS, "Write out a partial line."},
  {"isatty", writer_false, METH_NOARGS, NULL},
  {"readable", writer_false, METH_NOARGS, NULL},
  {"seekable", writer_false, METH_NOARGS, NULL},
  {"writable", writer_true, METH_NOARGS, NULL},
  {"fileno", writer_fileno, METH_NOARGS, NULL},
  {NULL, NULL, 0, NULL}
};

static PyGetSetDef writer_getset[] = {
  {"encoding", writer_get_encoding, NULL, NULL, NULL},
  {"errors", writer_get_errors, NULL, NULL, NULL},
  {"closed", writer_get_false, NULL, NULL, NULL},
  {NULL, NULL, NULL, NULL, NULL}
};

static PyTypeObject LogWriter_Type = {
  PyVarObject_HEAD_INIT(NULL, 0)
  .tp_name = "idcheck.LogWriter",
  .tp_doc = "A text stream whose lines go to the log with the policy prefix.",
  .tp_basicsize = sizeof(LogWriter),
  .tp_flags = Py_TPFLAGS_DEFAULT,
  .tp_new = PyType_GenericNew,
  .tp_methods = writer_methods,
  .tp_getset = writer_getset,
};

static PyObject *writer_new(void)
{
  return PyObject_CallNoArgs((PyObject *)&LogWriter_Type);
}

/* ---- module functions ---- */

static PyObject *idcheck_log(PyObject *self, PyObject *arg)
{
  (void)self;
  if (PyBytes_Check(arg)) {
    log_line("policy", PyBytes_AS_STRING(arg), (size_t)PyBytes_GET_SIZE(arg));
    Py_RETURN_NONE;
  }
  PyObject *b = log_bytes(arg, "log");
  if (!b) return NULL;
  log_line("policy", PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
  Py_DECREF(b);
  Py_RETURN_NONE;
}

static PyMethodDef idcheck_methods[] = {
  {"log", idcheck_log, METH_O,
   "log(msg): one line to the log (control bytes become '?', cut at 1000 bytes)."},
  {"dns", (PyCFunction)(void (*)(void))idcheck_dns, METH_VARARGS | METH_KEYWORDS, IDCHECK_DNS_DOC},
  {NULL, NULL, 0, NULL}
};

static struct PyModuleDef idcheck_def = {
  PyModuleDef_HEAD_INIT,
  .m_name = "idcheck",
  .m_doc = "What qmail-idcheck gives a checkID policy: logging, the connection's "
           "environment, the body size and the stage of the call.",
  .m_size = -1,
  .m_methods = idcheck_methods,
};

PyMODINIT_FUNC idcheck_module_init(void)
{
  if (PyType_Ready(&LogWriter_Type) < 0) return NULL;
  PyObject *m = PyModule_Create(&idcheck_def);
  if (!m) return NULL;
  PyObject *env = PyDict_New();
  if (!env
      || PyModule_AddObjectRef(m, "environ", env) < 0
      || PyModule_AddIntConstant(m, "bodysize", 0) < 0
      || PyModule_AddIntConstant(m, "hdrscut", 0) < 0
      || PyModule_AddObjectRef(m, "stage", Py_None) < 0
      || PyModule_AddObjectRef(m, "LogWriter", (PyObject *)&LogWriter_Type) < 0
      || idcheck_dns_add_types(m) < 0) {
    Py_XDECREF(env);
    Py_DECREF(m);
    return NULL;
  }
  Py_XSETREF(environ_dict, env);
  return m;
}

int idcheck_module_load(void)
{
  static const char *const names[3] = { "mail", "rcpt", "data" };
  module = PyImport_ImportModule("idcheck");
  if (!module) return -1;
  for (int i = 0; i < 3; ++i)
    if (!(stage_names[i] = PyUnicode_InternFromString(names[i]))) return -1;
  if (!(traceback_writer = writer_new())) return -1;
  if (!(stdout_writer = writer_new())) return -1;
  if (!(stderr_writer = writer_new())) return -1;
  if (PySys_SetObject("stdout", stdout_writer) < 0) return -1;
  if (PySys_SetObject("stderr", stderr_writer) < 0) return -1;
  return 0;
}

static int environ_fill(const struct wire_list *env)
{
  const char *item;
  size_t ilen, pos = 0;
  PyDict_Clear(environ_dict);
  while (wire_list_next(env, &pos, &item, &ilen)) {
    const char *eq = memchr(item, '=', ilen);   /* the decoder checked it is there */
    size_t nlen = (size_t)(eq - item);
    PyObject *k = PyUnicode_DecodeUTF8(item, (Py_ssize_t)nlen, "surrogateescape");
    PyObject *v = k ? PyUnicode_DecodeUTF8(eq + 1, (Py_ssize_t)(ilen - nlen - 1),
                                           "surrogateescape") : NULL;
    int r = v ? PyDict_SetItem(environ_dict, k, v) : -1;
    Py_XDECREF(k);
    Py_XDECREF(v);
    if (r < 0) return -1;
  }
  return 0;
}

static int int_attr_set(const char *name, unsigned long long value)
{
  PyObject *v = PyLong_FromUnsignedLongLong(value);
  if (!v) return -1;
  int r = PyObject_SetAttrString(module, name, v);
  Py_DECREF(v);
  return r;
}

int idcheck_module_refresh(const struct wire_request *rq)
{
  int s = rq->nargs == 4 ? 0 : rq->nargs == 5 ? 1 : 2;
  if (environ_fill(&rq->env) < 0) return -1;
  if (int_attr_set("bodysize", rq->bodysize) < 0 || int_attr_set("hdrscut", rq->hdrscut) < 0)
    return -1;
  return PyObject_SetAttrString(module, "stage", stage_names[s]);
}

PyObject *idcheck_traceback_writer(void)
{
  return traceback_writer;
}

void idcheck_writers_flush(void)
{
  PyObject *w[3] = { stdout_writer, stderr_writer, traceback_writer };
  for (int i = 0; i < 3; ++i)
    if (w[i]) {
      LogWriter *lw = (LogWriter *)w[i];
      if (lw->len) writer_emit(lw);
      lw->cutting = 0;
    }
}
