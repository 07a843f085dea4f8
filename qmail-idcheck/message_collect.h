/* What checkID gets at end of data: the header fields as the client sent
 * them (folding kept, dot-stuffing undone, no final CRLF) and the body up to
 * a limit. Fed with exactly the DATA bytes relayed to prog, terminator
 * excluded; bare CR and LF never reach it (the relay refuses them).
 *
 * For each field in Hdrs it also keeps where the field starts in the message
 * as qmail-smtpd stores it (LF line ends, dots unstuffed) and how long its
 * name is, so that a policy's edit of "field i of Hdrs" can be carried out
 * by the queue wrapper on the stored message. */
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
  size_t hdrscut;     /* fields left out of hdrs: past the cap */
  size_t stored;      /* bytes so far as qmail-smtpd stores them */
  size_t line_at;     /* where the current line starts, stored */
  size_t field_at;    /* where the current field starts, stored */
  stralloc where;     /* per field in hdrs: struct message_field */
};

struct message_field {
  size_t at;          /* the field's first byte in the stored message */
  size_t namelen;     /* bytes before its colon */
};

void message_collect_start(struct message_collect *c, size_t bodymax, size_t hdrsmax);
int message_collect_feed(struct message_collect *c, const char *buf, size_t len);
int message_collect_end(struct message_collect *c);   /* 0: out of memory */

/* Field i of hdrs, or 0 when there is none. */
const struct message_field *message_collect_field(const struct message_collect *c, size_t i);

#endif
