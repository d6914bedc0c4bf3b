/* ipybridge.h - IPython on demand: the first time a cell needs something
 * only IPython has (one of its magics, %load_ext of an IPython extension,
 * an InteractiveShell attribute through get_ipython()), IPython's shell is
 * made, bound to the kernel's user namespace, with its display hook, display
 * publisher, tracebacks, events and input history routed to the kernel's.
 * A session that never needs it never imports IPython. */
#ifndef PYROMETER_IPYBRIDGE_H
#define PYROMETER_IPYBRIDGE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* 1 once IPython's shell is up. GIL held. */
int ipybridge_active(void);

/* 1 when IPython provides the line (cell) magic name: before the bridge is
 * up, from the list of IPython 8/9's magics (and %store, from the storemagic
 * extension that IPython's applications load); after, by asking IPython
 * (extensions add magics). Imports nothing before the bridge is up; never
 * raises. GIL held. */
int ipybridge_has_magic(const char *name, int cell);

/* 1 when a one-line cell that starts with name (unbound, not the kernel's
 * own magic) should run as IPython's line magic %name, as IPython's
 * automagic does: IPython has that magic (ipybridge_has_magic) and is up or
 * can be imported here. Where it cannot, 0, so the name stays a NameError
 * rather than a message about installing IPython. Imports nothing before
 * the bridge is up; never raises. GIL held. */
int ipybridge_automagic(const char *name);

/* Brings IPython's shell up if it is not (about 0.3 s and 30 MiB, once).
 * Returns it (borrowed), or NULL with an exception set (ImportError when
 * IPython is not installed). GIL held. */
PyObject *ipybridge_shell(void);

/* Once IPython's shell is up: obj's mime bundle from its display_formatter,
 * as under ipykernel (so %precision, %pprint, and formatters that code
 * registers with for_type apply). Returns the data dict (new reference)
 * and sets *metadata to a new dict, or NULL with an exception set. Not to
 * be called before the shell is up (ipybridge_active). GIL held. */
PyObject *ipybridge_format(PyObject *obj, PyObject **metadata);

/* Runs IPython's %name line (cell NULL) or %%name line + cell, bringing the
 * shell up first. Returns the magic's value (new reference), or NULL with
 * an exception set. GIL held. */
PyObject *ipybridge_run_magic(const char *name, PyObject *line, PyObject *cell);

/* The help text of IPython's magic name (a new str), or NULL with no
 * exception set when IPython has no such magic; brings the shell up when
 * ipybridge_has_magic(name) says IPython has it. GIL held. */
PyObject *ipybridge_magic_doc(const char *name, int cell);

/* 1 when attr names an InteractiveShell attribute that get_ipython() should
 * bring the bridge up for (magics_manager, config, register_magic_function,
 * extension_manager, ...). GIL held. */
int ipybridge_shell_attr(const char *attr);

/* What %lsmagic adds for IPython: its magics by name, when IPython is
 * installed (found without importing it), else "". A new str, or NULL with
 * an exception set. GIL held. */
PyObject *ipybridge_magics_text(void);

/* After a cell failed (its error is in sys.last_traceback): when IPython's
 * shell is up, its traceback handler forgets the one it last showed, so
 * %debug looks at this error; and when %pdb is on (call_pdb) and
 * interactive is set, its post-mortem debugger runs now, as in IPython.
 * Never raises. GIL held. */
void ipybridge_cell_failed(int interactive);

/* Import-time patches (stdmagics_hooks.c's loader): IPython's
 * InteractiveShell.instance() brings the kernel's shell up rather than
 * making a second one, and IPython.get_ipython() returns the kernel's
 * shell. Each returns 0, or -1 with an exception set. GIL held. */
int ipybridge_patch_interactiveshell(PyObject *mod);
int ipybridge_patch_getipython(PyObject *mod);

/* Drops the shell reference (before the interpreter ends). GIL held. */
void ipybridge_clear(void);

#endif
