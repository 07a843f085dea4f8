/* Ending the session from any part of the proxy. main registers how it ends
 * (flush the client, stop the policy, let prog see EOF and finish); the parts
 * call these, so none of them needs to know the others. */
#ifndef SESSION_END_H
#define SESSION_END_H

typedef void (*session_ender)(const char *last_words, int code);
void session_end_register(session_ender ender);

/* last_words (or 0) to the client, then exit with code (-1: prog's status). */
void session_end(const char *last_words, int code) __attribute__((noreturn));
void die_nomem(void) __attribute__((noreturn));     /* 421 out of memory (#4.3.0) */
void die_timeout(void) __attribute__((noreturn));   /* 451 timeout (#4.4.2) */

#endif
