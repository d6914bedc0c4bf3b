/* sampler/backend_frames.c - the memory layout on Python 3.11 and 3.12.
 *
 * These versions publish no debug offsets, so the offsets come from the
 * interpreter's own frame structs at build time (the extension is built
 * against the headers of the interpreter that loads it). Only this file
 * sees the internal headers. 3.13+: backend_debug_offsets.c.
 */
#define PY_SSIZE_T_CLEAN
/* The layout structs are internal: this file alone is built as core code. */
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE
#endif
#include <Python.h>

#if PY_VERSION_HEX < 0x030D0000
#include "internal/pycore_frame.h"
#include "internal/pycore_interp.h"
#include "sampler/sampler.h"

#define END(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
#define MAX2(a, b)       ((a) > (b) ? (a) : (b))

int sampler_layout_init(sampler_layout *l, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    memset(l, 0, sizeof *l);
    l->is_threads_head = offsetof(PyInterpreterState, threads.head);
    l->ts_next = offsetof(PyThreadState, next);
    l->ts_native_tid = offsetof(PyThreadState, native_thread_id);
    l->ts_frame = offsetof(PyThreadState, cframe);
    l->ts_chunk = offsetof(PyThreadState, datastack_chunk); /* public struct */
    l->ts_top = offsetof(PyThreadState, datastack_top);
    l->ts_via_cframe = 1;
    l->cframe_frame = offsetof(_PyCFrame, current_frame);
    l->fr_previous = offsetof(_PyInterpreterFrame, previous);
    l->fr_code = offsetof(_PyInterpreterFrame, f_code);
    l->fr_instr = offsetof(_PyInterpreterFrame, prev_instr);
    l->fr_owner = offsetof(_PyInterpreterFrame, owner);
    l->fr_read = MAX2(MAX2(END(_PyInterpreterFrame, previous), END(_PyInterpreterFrame, f_code)),
                      MAX2(END(_PyInterpreterFrame, prev_instr), END(_PyInterpreterFrame, owner)));
    l->code_mask = ~(uintptr_t)0;
    l->owner_generator = FRAME_OWNED_BY_GENERATOR;
#if PY_VERSION_HEX >= 0x030C0000
    l->owner_first_shim = FRAME_OWNED_BY_CSTACK;
#else
    l->owner_first_shim = -1;
#endif
    l->co_filename = offsetof(PyCodeObject, co_filename);
    l->co_name = offsetof(PyCodeObject, co_name);
    l->co_qualname = offsetof(PyCodeObject, co_qualname);
    l->co_linetable = offsetof(PyCodeObject, co_linetable);
    l->co_firstlineno = offsetof(PyCodeObject, co_firstlineno);
    l->co_flags = offsetof(PyCodeObject, co_flags);
    l->co_code = offsetof(PyCodeObject, co_code_adaptive);
    l->co_read = offsetof(PyCodeObject, co_code_adaptive);
    return 0;
}
#endif
