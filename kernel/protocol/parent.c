/* parent.c - watches the process named by JPY_PARENT_PID from a thread of
 * its own and reports its exit (see parent.h). */
#include "parent.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kthread.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* Linux 5.3, the same number on every architecture */
#endif

/* Set once by parent_watch_start, then read only by the watch thread. */
static struct {
    pid_t pid;  /* the process watched */
    pid_t ppid; /* our parent at start, when it is the process watched */
    int pidfd;  /* readable once pid has exited; -1 without pidfds */
    void (*gone)(void *, pid_t);
    void *arg;
} watch;

/* The fallback's test: 0 once the process is gone. A parent that exits
 * leaves a zombie until its own parent reaps it, which kill(pid, 0) still
 * finds; our own parent's exit shows at once as a new getppid(). */
static int alive(void)
{
    if (watch.ppid != 0 && getppid() != watch.ppid)
        return 0;
    return kill(watch.pid, 0) == 0 || errno == EPERM;
}

static void *watch_main(void *unused)
{
    (void)unused;
    if (watch.pidfd >= 0) {
        struct pollfd p = {watch.pidfd, POLLIN, 0};
        int rc;
        while ((rc = poll(&p, 1, -1)) < 0 && errno == EINTR)
            ;
        if (rc < 0) { /* cannot happen for a pidfd; fall back to looking */
            close(watch.pidfd);
            watch.pidfd = -1;
        }
    }
    if (watch.pidfd < 0)
        while (alive())
            sleep(1);
    watch.gone(watch.arg, watch.pid);
    return NULL;
}

pid_t parent_watch_start(void (*gone)(void *arg, pid_t pid), void *arg)
{
    const char *env = getenv("JPY_PARENT_PID");
    char *end;
    if (env == NULL || *env == '\0')
        return 0;
    errno = 0;
    long pid = strtol(env, &end, 10);
    if (errno != 0 || *end != '\0' || pid <= 1 || pid > INT_MAX)
        return 0; /* pid 1 never exits, it is only inherited */
    watch.pid = (pid_t)pid;
    watch.ppid = getppid() == watch.pid ? watch.pid : 0;
    watch.gone = gone;
    watch.arg = arg;
    watch.pidfd = (int)syscall(SYS_pidfd_open, watch.pid, 0);
    if (watch.pidfd < 0 && errno == ESRCH)
        watch.ppid = -1; /* gone already: no getppid() is -1, so alive() says 0 */
    pthread_t t;
    if (kthread_start(&t, watch_main, NULL) != 0)
        return -1;
    pthread_detach(t);
    return watch.pid;
}
