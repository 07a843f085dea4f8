/* The policy wire format: how qmail-idcheck hands one checkID call to the
 * process that runs Python (qmail-idcheck-python, started per session, or a
 * qmail-idcheckd worker) and gets the verdict back; the same reply frame
 * carries the verdict on to qmail-idcheck-queue (queue_channel.h). Every
 * side builds, reads and decodes its frames here: the proxy's two transports,
 * qmail-idcheck-python, qmail-idcheckd's master (the hello) and its workers.
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
#include "deadline.h"
#include "stralloc.h"

#define WIRE_MAGIC "checkID1"
#define WIRE_MAX_FRAME (64u << 20)   /* a frame larger than this is refused */
#define WIRE_HELLO_MAGIC "hello1"
#define WIRE_MAX_HELLO 200

/* ---- frames on a descriptor ---- */

struct wire_frame {
  size_t len;                 /* the whole frame: the first len bytes of the buffer */
  const char *payload;        /* its contents, inside the buffer */
  size_t plen;
};

enum wire_read {
  WIRE_OK, WIRE_MALFORMED, WIRE_EXTRA, WIRE_EOF, WIRE_TIMEOUT, WIRE_ERROR, WIRE_NOMEM
};

/* Whether buf begins with a whole frame of at most WIRE_MAX_FRAME bytes:
 * 1 yes (in f), 0 not yet, -1 malformed or too large. */
int wire_frame_parse(const char *buf, size_t len, struct wire_frame *f);

/* Reads fd into buf (after what buf holds already) until buf begins with a
 * whole frame of at most WIRE_MAX_FRAME bytes; no wait goes past deadline.
 * WIRE_OK: the frame is in f; buf may hold more after it. WIRE_EOF: fd ended
 * first (buf->len 0: between frames). WIRE_TIMEOUT: the deadline passed.
 * WIRE_ERROR: errno says why. */
enum wire_read wire_frame_read(int fd, stralloc *buf, deadline_t deadline,
                               struct wire_frame *f);
/* One frame from a peer that sends exactly one per turn (one request, one
 * reply): buf is emptied first, and a byte after the frame is WIRE_EXTRA. */
enum wire_read wire_frame_read_one(int fd, stralloc *buf, deadline_t deadline,
                                   struct wire_frame *f);

/* ---- the request ---- */

/* Building: wire_request_begin, then the fields in order with wire_put_opt,
 * netstring_catb, lists via netstring_open + an item each + netstring_close,
 * then wire_request_end. */
int wire_request_begin(stralloc *out, size_t *frame_mark, int nargs);
int wire_put_opt(stralloc *out, const char *s, size_t len, int present);
int wire_request_end(stralloc *out, size_t frame_mark);

struct wire_opt {
  const char *s;
  size_t len;
  int present;                /* 0: "-" (None) */
};

struct wire_list {            /* a list field's contents: netstrings, one per item */
  const char *s;
  size_t len;
};

/* A request as decoded: every pointer points into the payload, which must
 * outlive it. */
struct wire_request {
  int nargs;                  /* 4, 5 or 7 */
  struct wire_opt ip, id, helo, sender;
  struct wire_list rcpts, hdrs;
  struct wire_opt body;
  unsigned long long bodysize;
  struct wire_list env;       /* items "NAME=value" */
  unsigned long long hdrscut; /* header fields left out of hdrs */
};

/* A request frame's payload: 1 ok, 0 malformed (wrong magic, field count,
 * nargs, option, number or list syntax, an env item without '='). */
int wire_request_decode(const char *buf, size_t len, struct wire_request *rq);

/* Next item of a list wire_request_decode has checked: 1 item, 0 end. */
int wire_list_next(const struct wire_list *l, size_t *pos,
                   const char **item, size_t *ilen);

/* ---- the reply ---- */

enum policy_action {
  ACT_NONE = 0, ACT_ACCEPT, ACT_REJECT, ACT_FILTER, ACT_CONTINUE,
  ACT_TEMPFAIL, ACT_DISCARD, ACT_FAULT
};
const char *policy_action_name(enum policy_action a);
enum policy_action policy_action_parse(const char *s, size_t len);

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
/* Encode a reply (the proxy to the queue wrapper, callees written in C). */
int wire_reply_encode(stralloc *out, const struct policy_verdict *v);
void policy_verdict_free(struct policy_verdict *v);

/* Building a reply field by field (a callee that checks only the shape:
 * its action may be a word the proxy does not know): wire_reply_begin, the
 * fields from action on (netstrings; the headers and edits lists via
 * netstring_open, an item each, netstring_close), wire_reply_end. 1 ok,
 * 0 out of memory; wire_reply_end -1: the frame is larger than
 * WIRE_MAX_FRAME (the reader would refuse it). */
int wire_reply_begin(stralloc *out, size_t *frame_mark);
int wire_reply_end(stralloc *out, size_t frame_mark);

/* Walk the headers list: 1 next header, 0 end, -1 malformed. */
int wire_header_next(const struct policy_verdict *v, size_t *pos,
                     const char **label, size_t *llen,
                     const char **text, size_t *tlen);
/* Appends one header to a headers list's contents: 0 out of memory. */
int wire_header_cat(stralloc *headers, const char *label, size_t llen,
                    const char *text, size_t tlen);

/* Walk the edits list: 1 next edit, 0 end, -1 malformed. */
int wire_edit_next(const struct policy_verdict *v, size_t *pos,
                   const char **where, size_t *wlen, const char **name, size_t *nlen,
                   const char **label, size_t *llen);
/* Appends one edit to an edits list's contents: 0 out of memory. */
int wire_edit_cat(stralloc *edits, const char *where, size_t wlen, const char *name,
                  size_t nlen, const char *label, size_t llen);

/* ---- the hello ---- */

/* The hello frame (the whole frame, appended to out); 0 when the client
 * text is too long for WIRE_MAX_HELLO. */
int wire_hello_encode(stralloc *out, const char *client, size_t len, int present);
/* The hello at the start of buf: its frame's length (>0; a request may
 * follow it), with the client in *client; 0 when buf holds less than a
 * whole frame; -1 when it is no hello. */
long wire_hello_decode(const char *buf, size_t len, struct wire_opt *client);

#endif
