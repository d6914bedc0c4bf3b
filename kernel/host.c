/* host.c - the `_pyrometer_host` extension module: the kernel run by an
 * interpreter that is already up (`python -m pyrometer_kernel`, see
 * pyrometer_kernel.py.in), so user code runs in the interpreter's own
 * executable, and a venv's python hosts a kernel that lives in the venv. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Returns a malloc'ed UTF-8 copy of sys.<name> (a str), or NULL with an
 * exception set. */
static char *sys_string(const char *name)
{
    PyObject *v = PySys_GetObject(name); /* borrowed */
    const char *s = v && PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
    if (s == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "sys.%s is not set", name);
        return NULL;
    }
    char *copy = strdup(s);
    if (copy == NULL)
        PyErr_NoMemory();
    return copy;
}

/* main(args): runs the kernel's command line (cli_main) with args, the
 * arguments after the program name, and the GIL released; returns the exit
 * code. */
static PyObject *host_main(PyObject *mod, PyObject *args)
{
    PyObject *seq = NULL, *res = NULL;
    char **argv = NULL, *python = NULL, *prefix = NULL;
    Py_ssize_t n = 0;

    seq = PySequence_Fast(args, "main() takes a list of str");
    if (seq == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    argv = calloc((size_t)n + 2, sizeof *argv);
    if (argv == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    argv[0] = strdup("pyrometer_kernel");
    if (argv[0] == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = PySequence_Fast_GET_ITEM(seq, i);
        const char *s = PyUnicode_Check(a) ? PyUnicode_AsUTF8(a) : NULL;
        if (s == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "main() takes a list of str");
            goto error;
        }
        argv[i + 1] = strdup(s);
        if (argv[i + 1] == NULL) {
            PyErr_NoMemory();
            goto error;
        }
    }
    python = sys_string("executable");
    prefix = python ? sys_string("prefix") : NULL;
    if (prefix == NULL)
        goto error;
    cli_host host = {
        .hosted = 1, .prog = "python -m pyrometer_kernel", .python = python, .sys_prefix = prefix};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cli_main((int)n + 1, argv, &host);
    Py_END_ALLOW_THREADS
    /* A SIGINT that came with the shutdown (jupyter_client interrupts a
     * kernel it stops) must not become a KeyboardInterrupt here. */
    if (PyErr_CheckSignals() < 0)
        PyErr_Clear();
    res = PyLong_FromLong(rc);
error:
    if (argv != NULL) {
        for (Py_ssize_t i = 0; i < n + 1; i++)
            free(argv[i]);
        free(argv);
    }
    free(python);
    free(prefix);
    Py_XDECREF(seq);
    return res;
}

static PyMethodDef host_methods[] = {
    {"main", host_main, METH_O,
     "main(args)\n--\n\nRuns the pyrometer kernel's command line (-f CONNECTION_FILE, install, "
     "--version) in this interpreter; returns the exit code."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot host_slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    /* One kernel per process: it owns fds 1/2 and the main interpreter. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef host_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_pyrometer_host",
    .m_doc = "The pyrometer Jupyter kernel, hosted by this interpreter "
             "(python -m pyrometer_kernel -f CONNECTION_FILE).",
    .m_size = 0,
    .m_methods = host_methods,
    .m_slots = host_slots,
};

PyMODINIT_FUNC PyInit__pyrometer_host(void);

PyMODINIT_FUNC PyInit__pyrometer_host(void)
{
    return PyModuleDef_Init(&host_module);
}
