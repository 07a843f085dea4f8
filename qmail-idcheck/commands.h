/* The SMTP commands the proxy handles, one function each, for main's
 * command table. Each gets the argument after the verb and the spaces. Each
 * has a check step (the proxy's own refusals, then checkID) and a proceed
 * step (prog), and the two sides' transactions change together. */
#ifndef COMMANDS_H
#define COMMANDS_H
#include "policy_wire.h"
#include "stralloc.h"

void smtp_helo(const stralloc *line, const stralloc *arg);
void smtp_ehlo(const stralloc *line, const stralloc *arg);
void smtp_id(const stralloc *line, const stralloc *arg);
void smtp_mail(const stralloc *line, const stralloc *arg);
void smtp_rcpt(const stralloc *line, const stralloc *arg);
void smtp_data(const stralloc *line, const stralloc *arg);   /* data.c */
void smtp_rset(const stralloc *line, const stralloc *arg);
void smtp_quit(const stralloc *line, const stralloc *arg);
void smtp_auth(const stralloc *line, const stralloc *arg);
void smtp_starttls(const stralloc *line, const stralloc *arg);
void smtp_unimplemented(const stralloc *line, const stralloc *arg);
void smtp_forward(const stralloc *line, const stralloc *arg);

/* prog's reply is authoritative; when both say 2xx, checkID's text is sent. */
void reply_relay(int prog_code, const struct policy_verdict *v);

#endif
