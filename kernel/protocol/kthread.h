/* kthread.h - what the kernel's own threads share: they start with SIGINT
 * blocked, so that only the main thread, which runs the user's code, takes
 * interrupts; and they rouse one another through eventfds. */
#ifndef PYROMETER_KTHREAD_H
#define PYROMETER_KTHREAD_H

#include <pthread.h>
#include <signal.h>

/* Blocks SIGINT in the calling thread; threads it creates meanwhile (libzmq
 * creates its I/O thread with the first socket) inherit the mask. *old
 * receives the previous mask, for pthread_sigmask(SIG_SETMASK, old, NULL). */
void kthread_block_sigint(sigset_t *old);

/* Makes SIGINT interrupt blocking calls (EINTR) and do nothing else, even
 * if the parent passed it on as ignored (`jupyter lab &`, nohup): a handler
 * survives where SIG_IGN would be kept. The interpreter later replaces it
 * with its own. Process-wide; call before threads start. */
void kthread_catch_sigint(void);

/* pthread_create with SIGINT blocked in the new thread. Returns its result. */
int kthread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* Adds one to the eventfd efd, waking whoever polls it. */
void kthread_wake(int efd);

#endif
