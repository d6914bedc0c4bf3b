/* transform.h - cell text -> Python source: %magic, %%magic, !shell, obj?.
 *
 * The result has the same number of lines as the input (a cell magic
 * becomes one call), so tracebacks point at the user's own lines. Calls go
 * to the builtin `__pyrometer__` (the kernel's _pyrometer_kernel module):
 *   %name args        -> __pyrometer__.line_magic('name', 'args')
 *   x = %name args    -> x = __pyrometer__.line_magic('name', 'args')
 *   %%name args\nbody -> __pyrometer__.cell_magic('name', 'args', 'body')
 *   !cmd / x = !cmd   -> __pyrometer__.system('cmd') / ...getoutput('cmd')
 *   obj? / obj??      -> __pyrometer__.inspect('obj', 0 / 1)
 */
#ifndef PYROMETER_TRANSFORM_H
#define PYROMETER_TRANSFORM_H

#include <stddef.h>

/* Returns the transformed source (malloc'ed, caller frees), or NULL with a
 * one-line reason in err. Lines inside strings and brackets are left alone. */
char *transform_cell(const char *cell, char *err, size_t errlen);

/* Says whether name[0:len] should run as a line magic when a one-line cell
 * starts with it (automagic): 1 yes, 0 no. */
typedef int (*transform_magic_fn)(const char *name, size_t len, void *arg);

/* transform_cell, and automagic as IPython does it: a cell of one line
 * "name [args]", where is_magic(name) says yes and what follows the name
 * is not an assignment (=, +=, ...), a comparison, a tuple (,) or an
 * annotation (:), runs as %name args. is_magic may be NULL (none). */
char *transform_cell_auto(const char *cell, transform_magic_fn is_magic, void *arg, char *err,
                          size_t errlen);

/* Pasted indented code: when the first non-blank line is indented, returns
 * a copy of cell (malloc'ed, caller frees) with that indentation removed
 * from every line that starts with it, as IPython's leading_indent does;
 * NULL when there is nothing to remove (or no memory): use cell as it is.
 * Line count and every other character are kept. */
char *transform_dedent(const char *cell);

#endif
