/* magics.h - the magic registry and the kernel's built-in magics.
 *
 * A magic has a line handler, a cell handler, or both. Built-in magics are C
 * functions; the `pyrometer` extension's magics (%prun, %lprun, %memit,
 * %mprun, ...) are registered from pyrometer.MAGICS at start-up and called
 * as f(line, cell, user_ns, display).
 */
#ifndef PYROMETER_MAGICS_H
#define PYROMETER_MAGICS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <jansson.h>

/* Handlers return a new reference (the magic's value, often None), or NULL
 * with an exception set. cell is NULL for a line magic. GIL held. */
typedef PyObject *(*magic_handler)(PyObject *line, PyObject *cell);

/* Registers a built-in magic (either handler may be NULL). Returns 0/-1. */
int magics_register(const char *name, magic_handler line, magic_handler cell, const char *help);

/* Registers an extension magic: callable(line, cell, ns, display); kinds is
 * "line", "cell" or "line_cell". Returns 0, or -1 with an exception set. */
int magics_register_py(const char *name, const char *kinds, PyObject *callable);

/* Returns a new list of the names (without %) of every line magic, or of
 * every cell magic when cell is set, in registration order; NULL with an
 * exception set. GIL held. (For completion.) */
PyObject *magics_names(int cell);

/* Adds line_magic, cell_magic, system, getoutput and inspect to kmod and
 * registers the registry's own magics (%lsmagic, %load_ext, %pwd). The
 * other members register themselves, called by the start-up code. GIL held.
 * Returns 0, or -1 with an exception set. */
int magics_install(PyObject *kmod);

/* Registers pyrometer.MAGICS (the extension's profilers) with their help
 * from pyrometer.MAGIC_HELP. GIL held. Returns 0, or -1 with an exception
 * set. */
int magics_register_extension(void);

/* Returns the help text of magic name (a new str): the registered help of a
 * kernel magic, pyrometer.MAGIC_HELP's text for an extension magic, or
 * IPython's docstring for one of IPython's (which brings IPython up). NULL
 * with KeyError set when no magic has that name. GIL held. */
PyObject *magics_help(const char *name, int cell);

/* The first line of magic name's help that is not a usage line (a new
 * str), or NULL with an exception set. GIL held. */
PyObject *magics_summary(const char *name);

/* 1 when name is in the kernel's registry. GIL held. */
int magics_known(const char *name);

/* Writes text to the user's sys.stdout (what magics print goes there, so it
 * follows any redirection). Returns 0, or -1 with an exception set. */
int magics_write_stdout(const char *text);

/* Returns a new reference to pyrometer.UsageError, or NULL with an
 * exception set. */
PyObject *magics_usage_error_type(void);

/* Raises UsageError(msg): pyrometer.UsageError, the error every magic uses
 * for bad options. Returns NULL for convenience. */
PyObject *magics_usage_error(const char *fmt, ...);

#endif
