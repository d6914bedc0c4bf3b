/* exiter.c - the objects behind `exit` and `quit`. Calling one (or naming
 * it alone as a cell's last expression) adds {"source": "ask_exit",
 * "keepkernel": ...} to the execute_reply's payload, as ipykernel's
 * ZMQExitAutocall does, and unless keep_kernel is set asks the kernel to
 * end once the reply is out. Owns that request. */
#include "exiter.h"

#include <jansson.h>

#include "session.h"

typedef struct {
    PyObject_HEAD
} Exiter;

/* Set by a call, taken by the handler after the reply. Main thread only. */
static int exit_requested;

/* The Exiter type (owned). Protected by the GIL. */
static PyObject *exiter_type;

static PyObject *ex_call(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"keep_kernel", NULL};
    int keep = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:exit", kwlist, &keep))
        return NULL;
    json_t *item = json_pack("{s:s, s:b}", "source", "ask_exit", "keepkernel", keep);
    if (item == NULL)
        return PyErr_NoMemory();
    session_add_payload(item);
    if (!keep)
        exit_requested = 1;
    Py_RETURN_NONE;
}

static PyObject *ex_repr(PyObject *self)
{
    return PyUnicode_FromString("Use exit() or quit() to end the session; "
                                "exit(keep_kernel=True) leaves the kernel running.");
}

static void ex_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot ex_slots[] = {
    {Py_tp_call, ex_call},
    {Py_tp_repr, ex_repr},
    {Py_tp_dealloc, ex_dealloc},
    {Py_tp_doc, "exit(keep_kernel=False)\n--\n\nEnd the session: the frontend is asked to quit "
                "(jupyter console does), and the kernel ends unless keep_kernel is true. "
                "A bare `exit` does the same."},
    {0, NULL},
};

static PyType_Spec ex_spec = {
    .name = "_pyrometer_kernel.ExitAutocall",
    .basicsize = sizeof(Exiter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ex_slots,
};

int exiter_install(PyObject *kmod, PyObject *builtins)
{
    exiter_type = PyType_FromSpec(&ex_spec);
    if (exiter_type == NULL || PyModule_AddObjectRef(kmod, "ExitAutocall", exiter_type) < 0)
        return -1;
    const char *names[] = {"exit", "quit"};
    for (size_t i = 0; i < 2; i++) {
        PyObject *ex = (PyObject *)PyObject_New(Exiter, (PyTypeObject *)exiter_type);
        if (ex == NULL)
            return -1;
        int rc = PyObject_SetAttrString(builtins, names[i], ex);
        Py_DECREF(ex);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int exiter_displayed(PyObject *obj)
{
    if (exiter_type == NULL || Py_TYPE(obj) != (PyTypeObject *)exiter_type)
        return 0;
    PyObject *r = PyObject_CallNoArgs(obj);
    if (r == NULL)
        PyErr_Clear();
    Py_XDECREF(r);
    return 1;
}

int exiter_take_request(void)
{
    int r = exit_requested;
    exit_requested = 0;
    return r;
}
