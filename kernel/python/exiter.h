/* exiter.h - `exit` and `quit`: bare or called, they end the session as in
 * ipykernel, with an ask_exit payload that makes `jupyter console` quit. */
#ifndef PYROMETER_EXITER_H
#define PYROMETER_EXITER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Sets builtins.exit and builtins.quit to the kernel's exiters (IPython
 * puts its ExitAutocall there too). GIL held. Returns 0, or -1 with an
 * exception set. */
int exiter_install(PyObject *kmod, PyObject *builtins);

/* Called by the display hook with the value of a cell's last expression:
 * a bare `exit` or `quit` is called as if written exit(). Returns 1 when
 * obj was an exiter (handled), 0 otherwise. GIL held; never raises. */
int exiter_displayed(PyObject *obj);

/* Returns 1 once after a cell asked the kernel to end (exit() without
 * keep_kernel=True), then 0. The handler asks after each execute_request;
 * interp_execute clears what a comm callback may have left. Main thread;
 * needs no GIL. */
int exiter_take_request(void);

#endif
