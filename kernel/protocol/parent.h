/* parent.h - the kernel ends with the process that started it. jupyter_client
 * names itself in JPY_PARENT_PID; if that process goes, nobody can reach or
 * stop the kernel, which would otherwise hold the user's memory forever. */
#ifndef PYROMETER_PARENT_H
#define PYROMETER_PARENT_H

#include <sys/types.h>

/* Reads JPY_PARENT_PID (unset, unparsable or 1: returns 0 and watches
 * nothing, as ipykernel does) and starts a detached thread that calls
 * gone(arg) once, when that process has exited. It waits on a pidfd (no CPU
 * and no wake-ups until the parent exits, and any ancestor may be watched,
 * not only the direct parent) or, where pidfds are missing, looks once a
 * second. A parent already gone at start calls gone at once. Returns the pid
 * watched, 0 for none, or -1 if the thread could not start. */
pid_t parent_watch_start(void (*gone)(void *arg, pid_t pid), void *arg);

#endif
