/* pretty.h - a value's text/plain as IPython's pretty printer shows it under
 * ipykernel, natively: 79 columns, groups broken from the outermost in,
 * at most 1000 items a container, classes by their dotted name, functions
 * with their signature, plain objects as <module.Class at 0x...>, and the
 * collections types as constructor calls. Values whose class asks for
 * IPython's printer (_repr_pretty_) get IPython's own, when it is installed.
 * Used until IPython's shell is up; from then on its display formatter
 * shapes values (ipybridge_format). */
#ifndef PYROMETER_PRETTY_H
#define PYROMETER_PRETTY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* obj's text, a new str, or NULL with an exception set (the one its
 * __repr__ raised, say). GIL held. */
PyObject *pretty_text(PyObject *obj);

#endif
