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

/* Adds line_magic, cell_magic, system, getoutput and inspect to kmod,
 * registers the built-in magics and pyrometer.MAGICS. GIL held. */
int magics_install(PyObject *kmod);

/* Called after every cell (GIL held): shows pending matplotlib figures. */
void magics_after_cell(void);

/* Returns the execute_reply payload list collected during the cell (e.g. a
 * `page` from obj?), or NULL when there is none. GIL held. */
json_t *magics_take_payload(void);

/* Writes text to the user's sys.stdout (what magics print goes there, so it
 * follows any redirection). Returns 0, or -1 with an exception set. */
int magics_write_stdout(const char *text);

/* Appends a payload item (stolen) for the current cell. */
void magics_add_payload(json_t *item);

/* Returns a new reference to pyrometer.UsageError, or NULL with an
 * exception set. */
PyObject *magics_usage_error_type(void);

/* Raises UsageError(msg): pyrometer.UsageError, the error every magic uses
 * for bad options. Returns NULL for convenience. */
PyObject *magics_usage_error(const char *fmt, ...);

#endif
