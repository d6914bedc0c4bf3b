/* funcprof/funcprof.h - the deterministic function profiler behind %prun.
 *
 * funcprof/engine.c owns the profile hook, its per-thread tables and the
 * `pyrometer.Profile` type; funcprof/magic.c owns the %prun / %%prun / %pstats magics
 * and their rendering. This header is the contract between the two.
 */
#ifndef PYROMETER_FUNCPROF_H
#define PYROMETER_FUNCPROF_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Returns a new, disabled pyrometer.Profile, or NULL with an exception set.
 * threads != 0 profiles every Python thread (existing and started later);
 * builtins != 0 also records C functions, as cProfile does. */
PyObject *funcprof_profile_new(int threads, int builtins);

/* Starts profiling. Returns 0, or -1 with an exception set (for instance
 * when another pyrometer profile is already running); on failure nothing is
 * installed. */
int funcprof_enable(PyObject *profile);

/* Stops profiling and puts back every profile hook it replaced. Returns 0,
 * or -1 with an exception set if the hook had failed while running (the
 * stats gathered so far stay readable). Safe to call when not enabled. A
 * pending exception is saved and restored around the call. */
int funcprof_disable(PyObject *profile);

/* Returns a new dict in cProfile's shape,
 *     {(file, line, name): (cc, nc, tt, ct, {caller: (nc, cc, tt, ct)})},
 * built from what was recorded so far, or NULL with an exception set. */
PyObject *funcprof_snapshot(PyObject *profile);

/* 1 while some pyrometer.Profile is enabled in this process, else 0. */
int funcprof_is_active(void);

/* funcprof/magic.c: registers %prun, %%prun and %pstats. Returns 0, or -1 with an
 * exception set. Called from funcprof_module_exec(). */
int prun_module_exec(PyObject *module);

#endif
