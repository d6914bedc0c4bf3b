/* targets.c - what a -f value names: functools.wraps chains followed to the
 * body, C wrappers refused with the way to their function. Shared by the
 * magics that take -f. */
#include "targets.h"

#include <stdio.h>

PyObject *targets_unwrap(PyObject *obj)
{
    PyObject *cur = Py_NewRef(obj);
    for (int i = 0; i < 100; i++) {
        PyObject *w = PyObject_GetAttrString(cur, "__wrapped__");
        if (w == NULL) {
            PyErr_Clear();
            break;
        }
        if (!PyCallable_Check(w) && !PyCode_Check(w)) {
            Py_DECREF(w);
            break;
        }
        Py_SETREF(cur, w);
    }
    return cur;
}

int targets_wrapped_hint(PyObject *obj, const char *what, char *buf, size_t n)
{
    if (PyFunction_Check(obj))
        return 0;
    PyObject *inner = targets_unwrap(obj);
    int found = inner != obj && PyFunction_Check(inner);
    if (found) {
        PyObject *name = PyObject_GetAttrString(inner, "__qualname__");
        const char *s = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        PyErr_Clear();
        snprintf(buf, n,
                 "a %s (a C wrapper around the Python function %s, as functools.lru_cache "
                 "makes); profile the function it wraps: -f %s.__wrapped__",
                 Py_TYPE(obj)->tp_name, s ? s : "?", what);
        Py_XDECREF(name);
    }
    Py_DECREF(inner);
    return found;
}
