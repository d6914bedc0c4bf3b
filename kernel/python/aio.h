/* aio.h - top-level await: a cell compiled with PyCF_ALLOW_TOP_LEVEL_AWAIT
 * gives a coroutine, which runs to its end on the kernel's own event loop.
 */
#ifndef PYROMETER_AIO_H
#define PYROMETER_AIO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Runs coro (borrowed; the coroutine that evaluating cell_code gave) on the
 * kernel's event loop until it ends, and returns its value (new reference),
 * or NULL with its exception set. The loop is made on first use (asyncio is
 * imported then, never before) and kept, so tasks a cell starts go on in
 * the next cell that awaits; between cells no loop is running, so
 * asyncio.run() works. An interrupted cell's task is cancelled. The
 * traceback of a raised exception starts at cell_code's frame: asyncio's
 * own frames are left out. GIL held. */
PyObject *aio_run(PyObject *coro, PyObject *cell_code);

/* 1 if evaluating code (a code object) gives a coroutine: it has a
 * top-level await, async for or async with. -1 with an exception set. */
int aio_is_coroutine_code(PyObject *code);

/* Closes the loop, if one was made. GIL held. */
void aio_clear(void);

#endif
