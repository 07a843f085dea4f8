/* queue-floor: the least a QMAILQUEUE wrapper can cost, for bench/sessions'
 * floor row: it execs the real queue, with the same descriptors, and does
 * nothing else.
 *
 *   QMAILQUEUE=.../queue-floor FLOOR_QUEUE=/var/qmail/bin/qmail-queue
 *
 * FLOOR_QUEUE names the real queue (default /var/qmail/bin/qmail-queue).
 * Not a program of the project: bench/README says what it is for. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
  (void)argc;
  const char *queue = getenv("FLOOR_QUEUE");
  if (!queue || !*queue) queue = "/var/qmail/bin/qmail-queue";
  argv[0] = (char *)queue;
  execv(queue, argv);
  fprintf(stderr, "queue-floor: cannot run %s\n", queue);
  return 81;      /* qmail-queue's "internal bug": the message is not taken */
}
