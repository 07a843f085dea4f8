/* qmail-idcheckd's pool: the workers as the master sees them (started,
 * ready, busy with a connection, idle, retired, killed, reaped) and who
 * gets one: waiting calls in order of arrival, at most -p workers per
 * client, the pool grown beyond -n up to -x while calls wait. */
#ifndef IDCHECKD_POOL_H
#define IDCHECKD_POOL_H
#include <stdint.h>
#include <sys/types.h>

enum wstate { W_EMPTY, W_STARTING, W_IDLE, W_BUSY };
struct worker {
  enum wstate state;
  pid_t pid;
  int ctl;                      /* the channel (idcheckd_worker.h); -1: closed */
  int conn;                     /* W_BUSY: the connection it serves */
  int64_t started;
  int64_t since;                /* W_BUSY: its call's start; W_IDLE: idle since */
  int64_t kill_at, respawn_at;
  unsigned long served;
  int retire;                   /* retire when the current call is done (SIGHUP) */
  const char *kill_why;
  uint32_t watching;            /* its channel's events in the master's wait */
};

extern int nworkers;            /* -n: always started */
extern int maxworkers;          /* -x: the pool's limit while calls wait */
extern int perclient;           /* -p: workers one client holds at once */
extern int64_t keep_ms;         /* -k: a worker beyond -n idle this long retires */
extern unsigned long maxrequests;   /* -m */
extern int64_t calllimit_ms;    /* -t */
extern struct worker *workers;  /* maxworkers slots; the first nworkers always filled */
/* 0 while running. Stopping (SIGTERM): no worker is started and no call
 * handed out any more; calls still running at this time are cut off. */
extern int64_t pool_stop_at;

/* The slots, once the settings are known, and the -n workers started:
 * 1 ok, 0 out of memory. */
int pool_start(void);

/* Call limits, hung-up sessions, respawns of the -n workers, retirement of
 * idle ones beyond -n. The earliest deadline still to come lowers *wake. */
void workers_tend(int64_t now, int64_t *wake);
/* Hands waiting calls to idle workers and grows the pool for the rest.
 * Returns when the pool may grow again if calls wait for that (a worker
 * died young a moment ago), else DEADLINE_NONE. */
int64_t dispatch(void);

void worker_status(struct worker *w);   /* its channel is readable */
void worker_hung_up(struct worker *w);  /* its session hung up mid-call */
void pool_reap(void);                   /* SIGCHLD */
void pool_reload(void);                 /* SIGHUP */
/* While stopping: 1 once no call is in progress (calls past pool_stop_at
 * are cut off); idle workers are let go as they come. */
int pool_stopped(int64_t now);
/* Stopped: lets every worker go and waits for their ends, a while, then
 * SIGKILLs the rest. wait_until returns at SIGCHLD or at its deadline. */
void pool_end(void (*wait_until)(int64_t deadline));

#endif
