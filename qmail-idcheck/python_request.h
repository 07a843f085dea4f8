/* One checkID request, decoded from a frame's payload (lib/policy_wire.h).
 * Every pointer points into the payload, which must outlive the request. */
#ifndef PYTHON_REQUEST_H
#define PYTHON_REQUEST_H
#include <stddef.h>

struct wire_opt {
  const char *s;
  size_t len;
  int present;          /* 0: "-" (None) */
};

struct wire_list {      /* a list field's contents: netstrings, one per item */
  const char *s;
  size_t len;
};

struct py_request {
  int nargs;            /* 4, 5 or 7 */
  struct wire_opt ip, id, helo, sender;
  struct wire_list rcpts, hdrs;
  struct wire_opt body;
  unsigned long long bodysize;
  struct wire_list env; /* items "NAME=value" */
  unsigned long long hdrscut;   /* header fields left out of hdrs */
};

/* 1 ok, 0 malformed (wrong magic, field count, nargs, option or list syntax). */
int py_request_decode(const char *buf, size_t len, struct py_request *rq);

/* Next item of a list the decoder has checked: 1 item, 0 end. */
int wire_list_next(const struct wire_list *l, size_t *pos,
                   const char **item, size_t *ilen);

#endif
