/* stdmagics_hooks.h - rich display that needs no set-up line: an import hook
 * that connects IPython.display and matplotlib to the kernel when (and only
 * when) the user imports them, the inline matplotlib backend, and the
 * DisplayHandle type. */
#ifndef PYROMETER_STDMAGICS_HOOKS_H
#define PYROMETER_STDMAGICS_HOOKS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The inline backend, as matplotlib names it. */
#define STDMAGICS_MPL_BACKEND "module://_pyrometer_kernel_mpl"

/* Puts the import hook first on sys.meta_path and adds DisplayHandle to the
 * _pyrometer_kernel module. Imports neither IPython nor matplotlib. GIL
 * held. Returns 0, or -1 with an exception set. */
int stdmagics_hooks_install(void);

/* IPython's shell is up: from now on the patched IPython.display functions
 * call IPython's own (whose display publisher is the kernel's), so that
 * %%capture and IPython's formatters see them, and matplotlib figures take
 * the formats IPython's InlineBackend configuration gives (png by default,
 * as under ipykernel). GIL held. Returns 0, or -1 with an exception set. */
int stdmagics_hooks_ipython_ready(PyObject *shell);

/* %matplotlib inline: makes the inline backend current now (when pyplot is
 * loaded) and on later imports, even if MPLBACKEND is set. GIL held.
 * Returns 0, or -1 with an exception set. */
int stdmagics_hooks_inline(void);

/* Publishes every open pyplot figure as display_data (image/png +
 * text/plain) and closes them, if pyplot is loaded and the inline backend
 * is current. Never raises: a failure is reported on stderr. GIL held. */
void stdmagics_hooks_flush_figures(void);

/* Once IPython's shell is up, matplotlib figures are shown in the formats
 * InlineBackend's configuration asks for, as under ipykernel: when obj is a
 * matplotlib Figure and that configuration changed since the last look,
 * IPython's select_figure_formats registers them with shell's display
 * formatter. Called before the formatter formats obj; other values cost a
 * dict lookup. Returns 0, or -1 with an exception set. GIL held. */
int stdmagics_hooks_figure_formats(PyObject *shell, PyObject *obj);

/* Returns a new DisplayHandle for display_id (borrowed): an object with
 * .display_id, .display(obj, **kw) and .update(obj, **kw), as IPython's.
 * NULL with an exception set. GIL held. */
PyObject *stdmagics_display_handle_new(PyObject *display_id);

#endif
