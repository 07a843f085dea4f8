#include "session_end.h"
#include <unistd.h>

static session_ender ender;

void session_end_register(session_ender e)
{
  ender = e;
}

void session_end(const char *last_words, int code)
{
  if (ender) ender(last_words, code);
  _exit(code >= 0 ? code : 111);
}

void die_nomem(void)
{
  session_end("421 out of memory (#4.3.0)\r\n", 111);
}

void die_timeout(void)
{
  session_end("451 timeout (#4.4.2)\r\n", 111);
}
