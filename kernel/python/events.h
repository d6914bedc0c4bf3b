/* events.h - the kernel's cell events, as IPython's EventManager has them:
 * pre_execute, pre_run_cell, post_execute, post_run_cell, shell_initialized.
 * get_ipython().events is this object, and the IPython bridge gives the same
 * object to IPython's shell, so an extension's callbacks see every cell. */
#ifndef PYROMETER_EVENTS_H
#define PYROMETER_EVENTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Makes the events object and adds its type to kmod. GIL held. Returns 0,
 * or -1 with an exception set. */
int events_install(PyObject *kmod);

/* The events object (borrowed), or NULL before events_install. */
PyObject *events_object(void);

/* Before a cell: triggers pre_execute, then pre_run_cell(info) unless
 * silent; info has raw_cell, store_history, silent, shell_futures and
 * cell_id (NULL: None), as IPython's ExecutionInfo. Costs two dict lookups
 * when nothing is registered. A callback that raises is reported on stderr,
 * as IPython does, and the others still run. Never raises. GIL held. */
void events_pre_cell(const char *code, int silent, int store_history, const char *cell_id);

/* After the same cell: triggers post_execute, then post_run_cell(result)
 * unless silent; result has info, execution_count, result (value, borrowed,
 * or NULL), error_before_exec, error_in_exec (exc, borrowed, or NULL) and
 * success, as IPython's ExecutionResult. Never raises. GIL held. */
void events_post_cell(long execution_count, PyObject *value, PyObject *exc);

/* Triggers event with args (a tuple, borrowed). Never raises. GIL held. */
void events_trigger(const char *event, PyObject *args);

/* Drops the events object (before the interpreter ends). GIL held. */
void events_clear(void);

#endif
