/* The policy wire format: how qmail-idcheck hands one checkID call to the
 * process that runs Python (qmail-idcheck-python, started per session, or a
 * qmail-idcheckd worker) and gets the verdict back; the same reply frame
 * carries the verdict on to qmail-idcheck-queue (queue_channel.h).
 *
 * Every message is one netstring frame whose contents are netstrings (fields).
 * An optional value is "-" (None) or "+" followed by its bytes. A list is one
 * field whose contents are netstrings, one per item.
 *
 * Request fields, in order:
 *   0  "checkID1"                      magic and version
 *   1  nargs: "4", "5" or "7"          how many positional arguments to pass
 *   2  IP      optional               TCPREMOTEIP
 *   3  ID      optional               the declared ID
 *   4  H       optional               HELO/EHLO argument
 *   5  S       optional               MAIL FROM address
 *   6  R       list                   recipients (this one last)
 *   7  Hdrs    list                   header fields as received (no final CRLF)
 *   8  Body    optional               body bytes, at most IDCHECK_BODYMAX
 *   9  bodysize                       decimal: the full size of the body
 *  10  env     list of "NAME=value"   the connection's environment
 *  11  hdrscut                        decimal: header fields of the message
 *                                     left out of Hdrs (its size cap)
 * The callee calls checkID with the first nargs of IP, ID, H, S, R, Hdrs,
 * Body; strings are decoded as UTF-8 with surrogateescape, Body is bytes.
 *
 * Reply fields, in order:
 *   0  "checkID1"
 *   1  action: ACCEPT REJECT FILTER CONTINUE TEMPFAIL DISCARD, or FAULT
 *   2  code: decimal, or empty when checkID gave no reply (None)
 *   3  xcode (may be empty)
 *   4  text (for FAULT: a one-line reason; the traceback goes to the log)
 *   5  headers: list; each item is a netstring holding two: label, text
 *   6  edits (optional; absent when there are none): list of changes to the
 *      message's own header fields; each item is a netstring holding three:
 *      where, name, label. From the policy process: where is the field's
 *      index in Hdrs (decimal) and name is empty. From qmail-idcheck to the
 *      wrapper: where is the field's offset in the message as qmail-smtpd
 *      stores it (LF line ends, after its Received field) and name the
 *      field's name as received, for the wrapper to check. label: the new
 *      field name with its colon, or empty to remove the field.
 * Strings are encoded as UTF-8 with surrogateescape. The callee checks only
 * the shape (types); the proxy checks the meaning (policy_verdict_check).
 *
 * Hello (to qmail-idcheckd only): the first frame on a connection, written
 * once right after connect in one write, before any request; at most
 * WIRE_MAX_HELLO bytes. It says whom the session serves, so that the server
 * can bound the workers one client holds at once:
 *   0  "hello1"
 *   1  client  optional               TCPREMOTEIP
 * The server has no reply to it. */
#ifndef POLICY_WIRE_H
#define POLICY_WIRE_H
#include <stddef.h>
#include "stralloc.h"

#define WIRE_MAGIC "checkID1"
#define WIRE_MAX_FRAME (64u << 20)   /* a frame larger than this is refused */
#define WIRE_HELLO_MAGIC "hello1"
#define WIRE_MAX_HELLO 200

enum policy_action {
  ACT_NONE = 0, ACT_ACCEPT, ACT_REJECT, ACT_FILTER, ACT_CONTINUE,
  ACT_TEMPFAIL, ACT_DISCARD, ACT_FAULT
};
const char *policy_action_name(enum policy_action a);
enum policy_action policy_action_parse(const char *s, size_t len);

/* Request building: wire_request_begin, then the fields in order with
 * wire_put_opt / wire_put_field / lists via netstring_open+close, then
 * wire_request_end. */
int wire_request_begin(stralloc *out, size_t *frame_mark, int nargs);
int wire_put_opt(stralloc *out, const char *s, size_t len, int present);
int wire_request_end(stralloc *out, size_t frame_mark);

/* The hello frame (the whole frame, appended to out); 0 when the client
 * text is too long for WIRE_MAX_HELLO. */
int wire_hello_encode(stralloc *out, const char *client, size_t len, int present);
/* Decode a hello frame's contents: 1 ok (*present 0: no client given),
 * 0 malformed. */
int wire_hello_decode(const char *buf, size_t len, const char **client, size_t *clen,
                      int *present);

struct policy_verdict {
  enum policy_action action;
  int code;            /* 0: no reply given */
  stralloc xcode;
  stralloc text;
  stralloc headers;    /* the headers list field's contents, as on the wire */
  size_t nheaders;
  stralloc edits;      /* the edits list field's contents (empty: none) */
  size_t nedits;
};

/* Decode one reply frame's contents (the frame's payload): 1 ok, 0 malformed. */
int wire_reply_decode(const char *buf, size_t len, struct policy_verdict *v);
/* Encode a reply (used by callees written in C and by tests). */
int wire_reply_encode(stralloc *out, const struct policy_verdict *v);
void policy_verdict_free(struct policy_verdict *v);

/* Walk the headers list: 1 next header, 0 end, -1 malformed. */
int wire_header_next(const struct policy_verdict *v, size_t *pos,
                     const char **label, size_t *llen,
                     const char **text, size_t *tlen);

/* Walk the edits list: 1 next edit, 0 end, -1 malformed. */
int wire_edit_next(const struct policy_verdict *v, size_t *pos,
                   const char **where, size_t *wlen, const char **name, size_t *nlen,
                   const char **label, size_t *llen);
/* Appends one edit to an edits list's contents: 0 out of memory. */
int wire_edit_cat(stralloc *edits, const char *where, size_t wlen, const char *name,
                  size_t nlen, const char *label, size_t llen);

#endif
