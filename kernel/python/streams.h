/* streams.h - the kernel's sys.stdout and sys.stderr: file objects whose
 * writes become `stream` messages on iopub. */
#ifndef PYROMETER_STREAMS_H
#define PYROMETER_STREAMS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Adds the OutStream type to kmod and installs sys.stdout / sys.stderr
 * (sys.__stdout__ / __stderr__ too). GIL held. Returns 0 or -1. */
int streams_install(PyObject *kmod, PyObject *sys);

/* Makes threading (the module, just imported) start threads that keep the
 * starting cell as their output parent. The import hook calls it, so the
 * kernel does not import threading itself. GIL held. Returns 0 or -1. */
int streams_patch_threading(PyObject *threading);

/* Calls fn(); the threads it starts have no cell of their own: what they
 * print goes to whichever cell is running (a service thread, such as the
 * event loop of IPython's %%bash). Returns fn's result (new reference), or
 * NULL with an exception set. GIL held. */
PyObject *streams_call_unparented(PyObject *fn);

#endif
