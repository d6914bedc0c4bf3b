/* sampler.h - the statistical profiler's engine: what magic.c and render.c use.
 *
 * A sampler thread reads the frame chains of the interpreter's threads from
 * memory (never taking the GIL) and adds each stack to a call trie; code
 * objects are named from copies it makes when it first meets them, so the
 * results stay readable after the code is gone.
 */
#ifndef PYROMETER_SAMPLER_H
#define PYROMETER_SAMPLER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

/* ---- the interpreter's memory layout (backend_*.c) ----------------------- */

/* Offsets the engine needs to walk frame chains; one backend fills them per
 * Python version. All offsets are in bytes from the start of the object. */
typedef struct {
    size_t is_threads_head; /* PyInterpreterState: its first thread state */
    size_t ts_next;         /* PyThreadState.next */
    size_t ts_native_tid;   /* PyThreadState.native_thread_id */
    size_t ts_chunk;        /* PyThreadState.datastack_chunk */
    size_t ts_top;          /* PyThreadState.datastack_top */
    size_t ts_frame;        /* the current frame pointer, or the cframe pointer */
    int ts_via_cframe;      /* 1: ts_frame points to a _PyCFrame ... */
    size_t cframe_frame;    /* ... whose current_frame is at this offset */
    size_t fr_previous;     /* _PyInterpreterFrame.previous */
    size_t fr_code;         /* f_code / f_executable */
    size_t fr_instr;        /* prev_instr / instr_ptr */
    size_t fr_owner;        /* owner (one byte) */
    size_t fr_read;         /* bytes to read to cover the fields above */
    uintptr_t code_mask;    /* f_executable & code_mask is the object (tag bits off) */
    int owner_generator;    /* owner value of a generator / coroutine frame */
    int owner_first_shim;   /* owner values >= this are not Python frames (-1: none) */
    size_t co_filename, co_name, co_qualname, co_linetable, co_firstlineno, co_flags;
    size_t co_code; /* co_code_adaptive: where the instructions start */
    size_t co_read; /* bytes to read to cover the fields above */
} sampler_layout;

/* Fills *l for the running interpreter. Returns 0, or -1 with a reason in
 * err (nothing raised; no GIL needed). */
int sampler_layout_init(sampler_layout *l, char *err, size_t errlen);

/* ---- sessions ------------------------------------------------------------ */

typedef enum { SAMPLER_WALL, SAMPLER_CPU } sampler_mode;

typedef struct {
    double interval;   /* seconds between samples, > 0 */
    sampler_mode mode; /* wall: every sample counts its elapsed time; cpu: the
                          thread's CPU time since its previous sample */
    int all_threads;   /* 1: every thread of the interpreter; 0: the target */
} sampler_config;

typedef struct sampler_session sampler_session;
typedef struct sampler_data sampler_data;

/* Starts a sampler thread (idle until sampler_begin). GIL held. Returns the
 * session, or NULL with an exception set. */
sampler_session *sampler_new(const sampler_config *cfg);

/* Starts a recording of the calling thread (and, with all_threads, of every
 * thread); the previous recording is kept for sampler_take_last(). With
 * skip_callers, the calling thread's frames at this moment (the magic's
 * callers) are left out of its stacks. GIL held. Cheap: no system call
 * unless the sampler thread is asleep. */
void sampler_begin(sampler_session *s, int skip_callers);

/* Ends the current recording (the sampler thread finishes a sample in
 * progress and goes idle). GIL held. */
void sampler_end(sampler_session *s);

/* Detaches and returns the recording that sampler_end() ended last, or the
 * one before the running recording; NULL if there is none. The caller owns
 * it (sampler_data_free). GIL held. */
sampler_data *sampler_take_last(sampler_session *s);

/* Whether the session is recording now. */
int sampler_recording(sampler_session *s);

/* Stops and joins the sampler thread and frees the session (NULL is a
 * no-op). GIL held; nothing of the session keeps running afterwards. */
void sampler_free(sampler_session *s);

void sampler_data_free(sampler_data *d);

/* Converts a recording into the plain objects render.c and -r use: a new
 * dict {"stacks": [(thread, frames, samples, seconds), ...], "duration": s,
 * "samples": n, "interval": s, "mode": "wall"|"cpu", "threads": {label: tid},
 * "errors": n, "code": {(filename, qualname, firstlineno): linerange}}, where
 * frames is a tuple of (filename, qualname, firstlineno, line, is_coroutine)
 * from the outermost frame in. NULL with an exception set. GIL held. */
PyObject *sampler_data_to_python(const sampler_data *d);

#endif
