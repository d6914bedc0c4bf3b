/* kthread.c - what the kernel's own threads share (see kthread.h). */
#include "kthread.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

void kthread_block_sigint(sigset_t *old)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, old);
}

static void sigint_noop(int sig)
{
    (void)sig;
}

void kthread_catch_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sigint_noop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

int kthread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t old;
    kthread_block_sigint(&old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void kthread_wake(int efd)
{
    uint64_t one = 1;
    ssize_t w = write(efd, &one, sizeof one);
    (void)w; /* a full counter still wakes the poller */
}
