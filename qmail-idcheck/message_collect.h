/* What checkID gets at end of data: the header fields as the client sent
 * them (folding kept, dot-stuffing undone, no final CRLF) and the body up to
 * a limit. Fed with exactly the DATA bytes relayed to prog, terminator
 * excluded; bare CR and LF never reach it (the relay refuses them). */
#ifndef MESSAGE_COLLECT_H
#define MESSAGE_COLLECT_H
#include <stddef.h>
#include "stralloc.h"

struct message_collect {
  int bol;            /* at the start of a line: a dot here is stuffing */
  int in_headers;
  int have_field;
  int field_over;     /* the field passed hdrsmax: it is dropped whole */
  stralloc line;      /* the header line being read */
  stralloc field;     /* the field being built, folding kept */
  stralloc hdrs;      /* netstrings: the finished fields (a wire list) */
  stralloc body;      /* at most bodymax bytes */
  size_t bodysize;    /* the whole body, however long */
  size_t bodymax, hdrsmax;
};

void message_collect_start(struct message_collect *c, size_t bodymax, size_t hdrsmax);
int message_collect_feed(struct message_collect *c, const char *buf, size_t len);
int message_collect_end(struct message_collect *c);   /* 0: out of memory */

#endif
