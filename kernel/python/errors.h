/* errors.h - an exception as the `error` message's traceback list, the way
 * IPython shows it (its verbose "Context" mode), in ANSI colour. */
#ifndef PYROMETER_ERRORS_H
#define PYROMETER_ERRORS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <jansson.h>

/* Returns a new JSON array of strings for exc (borrowed), or NULL when out
 * of memory. Per exception, oldest of a chain first: a rule, the name with
 * "Traceback (most recent call last)", one entry per frame ("Cell In[N],
 * line L" or "File path:L", the function and its arguments, and up to two
 * lines either side of the current one, which is marked with an arrow and
 * has its running expression highlighted), then "Name: message". A
 * SyntaxError ends with the offending line and a caret instead. cells
 * (borrowed) maps cell file names to linecache entries; other files are
 * read through linecache. Colour unless NO_COLOR is set (non-empty) or
 * `%colors NoColor` was run. GIL held; leaves no exception set. */
json_t *errors_traceback(PyObject *exc, PyObject *cells);

/* 1 when the kernel's output is coloured: not after `%colors NoColor`, nor
 * with NO_COLOR set (non-empty). */
int errors_colour_on(void);

/* Registers %colors. Returns 0, or -1 with an exception set. */
int errors_register_magics(void);

#endif
