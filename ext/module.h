/* module.h - the `pyrometer` extension module: shared declarations.
 *
 * Each profiler component adds its functions and magics to the module from
 * its own *_module_exec() function, called once per module object by the
 * multi-phase init in module.c. A component never touches another's state.
 */
#ifndef PYROMETER_MODULE_H
#define PYROMETER_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "options.h"

/* Initialiser for the kernel: PyImport_AppendInittab("pyrometer", ...). */
PyMODINIT_FUNC PyInit_pyrometer(void);

/* Registers a magic in the module's MAGICS dict: name -> (kinds, callable).
 * kinds is "line", "cell" or "line_cell". The callable is invoked as
 *     callable(line: str, cell: str | None, ns: dict, display) -> object
 * where display(bundle: dict) publishes a MIME bundle ({"text/plain": ...,
 * "text/html": ...}). What it returns becomes the magic's value (e.g. -r).
 * If the profiled statement raised, the magic displays what it gathered and
 * then re-raises the statement's exception.
 * Returns 0, or -1 with an exception set. The callable is not stolen. */
int module_add_magic(PyObject *module, const char *name, const char *kinds, PyObject *callable);

/* Registers each magic of defs (up to its {NULL} sentinel) with
 * module_add_magic(): the callable is PyCFunction_NewEx(&defs[i], module)
 * and kinds[i] its kinds. defs must outlive the module (a static table).
 * Returns 0, or -1 with an exception set (earlier entries stay registered). */
int module_add_magics(PyObject *module, PyMethodDef *defs, const char *const *kinds);

/* Records the help text of magic name in the module's MAGIC_HELP dict:
 * options_help(m), the text that %name?, %name -h and Shift-Tab show in the
 * kernel and %name? under IPython. Returns 0, or -1 with an exception set. */
int module_add_magic_help(PyObject *module, const char *name, const options_magic *m);

/* Component entry points, one per profiler. Each returns 0, or -1 with an
 * exception set. */
int funcprof_module_exec(PyObject *module);
int lineprof_module_exec(PyObject *module);
int memprof_module_exec(PyObject *module);

#endif
