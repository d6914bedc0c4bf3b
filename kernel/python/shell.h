/* shell.h - get_ipython(): a small shell object for code written against
 * IPython's API (scripts exported by nbconvert call
 * get_ipython().run_line_magic(...), get_ipython().system(...)). */
#ifndef PYROMETER_SHELL_H
#define PYROMETER_SHELL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Adds the Shell type and the builtin get_ipython() to builtins; the shell
 * forwards to kmod's line_magic, cell_magic, system and getoutput. GIL held.
 * Returns 0, or -1 with an exception set. */
int shell_install(PyObject *kmod, PyObject *builtins);

/* The kernel's shell object, what the builtin get_ipython() returns
 * (borrowed; NULL before shell_install). */
PyObject *shell_object(void);

/* Drops the shell (before the interpreter ends). GIL held. */
void shell_clear(void);

#endif
