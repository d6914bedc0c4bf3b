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

#endif
