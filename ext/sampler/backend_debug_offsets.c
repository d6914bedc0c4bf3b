/* sampler/backend_debug_offsets.c - the memory layout on Python 3.13+.
 *
 * CPython 3.13 publishes _Py_DebugOffsets at the start of _PyRuntime for
 * out-of-process profilers and debuggers; this file reads the offsets the
 * sampler needs from there, at run time. Only this file sees the internal
 * header that declares the struct. 3.11/3.12: backend_frames.c.
 */
#define PY_SSIZE_T_CLEAN
/* The layout structs are internal: this file alone is built as core code. */
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE
#endif
#include <Python.h>

#if PY_VERSION_HEX >= 0x030D0000
#if PY_VERSION_HEX >= 0x030E0000
#include "internal/pycore_debug_offsets.h"
#else
#include "internal/pycore_runtime.h"
#endif
#include "sampler/sampler.h"

#include <stdio.h>
#include <string.h>

#if PY_VERSION_HEX >= 0x030E0000
/* The runtime state begins with its debug offsets; pycore_runtime.h (which
 * declares _PyRuntime) is not included here, so name the symbol directly. */
extern char _PyRuntime[];
#endif

#define MAX2(a, b) ((a) > (b) ? (a) : (b))

int sampler_layout_init(sampler_layout *l, char *err, size_t errlen)
{
    const _Py_DebugOffsets *d = (const _Py_DebugOffsets *)(const void *)&_PyRuntime;

    memset(l, 0, sizeof *l);
    if (memcmp(d->cookie, _Py_Debug_Cookie, sizeof d->cookie) != 0) {
        snprintf(err, errlen, "this interpreter publishes no debug offsets");
        return -1;
    }
    if ((d->version >> 16) != (PY_VERSION_HEX >> 16)) {
        snprintf(err, errlen, "debug offsets of version %llx, built for %x",
                 (unsigned long long)d->version, PY_VERSION_HEX);
        return -1;
    }
    l->is_threads_head = d->interpreter_state.threads_head;
    l->ts_next = d->thread_state.next;
    l->ts_native_tid = d->thread_state.native_thread_id;
    l->ts_frame = d->thread_state.current_frame;
    l->ts_chunk = offsetof(PyThreadState, datastack_chunk); /* public struct */
    l->ts_top = offsetof(PyThreadState, datastack_top);
    l->ts_via_cframe = 0;
    l->fr_previous = d->interpreter_frame.previous;
    l->fr_code = d->interpreter_frame.executable;
    l->fr_instr = d->interpreter_frame.instr_ptr;
    l->fr_owner = d->interpreter_frame.owner;
    l->fr_read = MAX2(MAX2(l->fr_previous, l->fr_code), MAX2(l->fr_instr, l->fr_owner)) + 8;
#if PY_VERSION_HEX >= 0x030E0000
    l->code_mask = ~(uintptr_t)3; /* f_executable is a tagged _PyStackRef */
#else
    l->code_mask = ~(uintptr_t)0;
#endif
    l->owner_generator = 1;  /* FRAME_OWNED_BY_GENERATOR */
    l->owner_first_shim = 3; /* FRAME_OWNED_BY_CSTACK (3.13), _INTERPRETER (3.14+) */
    l->co_filename = d->code_object.filename;
    l->co_name = d->code_object.name;
    l->co_qualname = d->code_object.qualname;
    l->co_linetable = d->code_object.linetable;
    l->co_firstlineno = d->code_object.firstlineno;
    l->co_flags = offsetof(PyCodeObject, co_flags); /* public struct; not in the offsets */
    l->co_code = d->code_object.co_code_adaptive;
    l->co_read = l->co_code;
    return 0;
}
#endif
