/* targets.h - what a -f value names, shared by every magic that takes -f
 * (%lprun, %mprun, %%mprof and those to come), so that a wrapped function
 * means the same everywhere: functools.wraps chains are followed to the body,
 * and a C wrapper (functools.lru_cache, functools.cache) is refused with the
 * way to reach the function it wraps.
 */
#ifndef PYROMETER_TARGETS_H
#define PYROMETER_TARGETS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>

/* Follows obj.__wrapped__ (functools.wraps, functools.update_wrapper) for as
 * long as it leads to a callable or a code object, up to 100 steps. Returns a
 * new reference to the last object reached (obj itself when it wraps
 * nothing); never fails, and leaves no exception set. */
PyObject *targets_unwrap(PyObject *obj);

/* When obj is not a Python function but carries a __wrapped__ that leads to
 * one (a C wrapper such as functools.lru_cache), writes into buf (n bytes)
 * "a <type> (a C wrapper around <name>); profile the function it wraps: -f
 * <what>.__wrapped__" and returns 1. Otherwise returns 0 with buf untouched.
 * Never fails, and leaves no exception set. */
int targets_wrapped_hint(PyObject *obj, const char *what, char *buf, size_t n);

#endif
