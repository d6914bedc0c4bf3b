/* shell.c - the object get_ipython() returns in the kernel. It offers the
 * part of IPython's InteractiveShell that notebook code calls directly:
 * run_line_magic, run_cell_magic, magic, system, getoutput, user_ns. It does
 * not pretend to be IPython: its type is _pyrometer_kernel.Shell. */
#include "shell.h"

#include "interp.h"

typedef struct {
    PyObject_HEAD
    PyObject *kmod; /* owned: the _pyrometer_kernel module */
} Shell;

/* The one shell. Protected by the GIL. */
static PyObject *the_shell;

static void shell_dealloc(Shell *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(self->kmod);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *forward(Shell *self, const char *fn, PyObject *args)
{
    PyObject *f = PyObject_GetAttrString(self->kmod, fn);
    if (f == NULL)
        return NULL;
    PyObject *r = PyObject_Call(f, args, NULL);
    Py_DECREF(f);
    return r;
}

static PyObject *sh_run_line_magic(Shell *self, PyObject *args)
{
    PyObject *name, *line;
    if (!PyArg_ParseTuple(args, "UU:run_line_magic", &name, &line))
        return NULL;
    return forward(self, "line_magic", args);
}

static PyObject *sh_run_cell_magic(Shell *self, PyObject *args)
{
    PyObject *name, *line, *cell;
    if (!PyArg_ParseTuple(args, "UUU:run_cell_magic", &name, &line, &cell))
        return NULL;
    return forward(self, "cell_magic", args);
}

/* magic("name args"): IPython's older spelling of run_line_magic. */
static PyObject *sh_magic(Shell *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "magic() takes a str such as 'time x = 1'");
        return NULL;
    }
    PyObject *parts = PyObject_CallMethod(arg, "partition", "s", " ");
    if (parts == NULL)
        return NULL;
    PyObject *name = PyObject_CallMethod(PyTuple_GET_ITEM(parts, 0), "lstrip", "s", "%");
    PyObject *args = name ? PyTuple_Pack(2, name, PyTuple_GET_ITEM(parts, 2)) : NULL;
    Py_XDECREF(name);
    Py_DECREF(parts);
    if (args == NULL)
        return NULL;
    PyObject *r = forward(self, "line_magic", args);
    Py_DECREF(args);
    return r;
}

/* Calls kmod.fn(arg). */
static PyObject *forward1(Shell *self, const char *fn, PyObject *arg)
{
    PyObject *args = PyTuple_Pack(1, arg);
    if (args == NULL)
        return NULL;
    PyObject *r = forward(self, fn, args);
    Py_DECREF(args);
    return r;
}

static PyObject *sh_system(Shell *self, PyObject *cmd)
{
    return forward1(self, "system", cmd);
}

static PyObject *sh_getoutput(Shell *self, PyObject *cmd)
{
    return forward1(self, "getoutput", cmd);
}

static PyObject *sh_user_ns(Shell *self, void *closure)
{
    return Py_NewRef(interp_user_ns());
}

static PyObject *sh_repr(Shell *self)
{
    return PyUnicode_FromString("<pyrometer kernel shell>");
}

static PyMethodDef sh_methods[] = {
    {"run_line_magic", (PyCFunction)sh_run_line_magic, METH_VARARGS,
     "run_line_magic(name, line): run %name line."},
    {"run_cell_magic", (PyCFunction)sh_run_cell_magic, METH_VARARGS,
     "run_cell_magic(name, line, cell): run %%name line with the cell's text."},
    {"magic", (PyCFunction)sh_magic, METH_O, "magic('name args'): run %name args."},
    {"system", (PyCFunction)sh_system, METH_O, "system(cmd): run a shell command."},
    {"getoutput", (PyCFunction)sh_getoutput, METH_O,
     "getoutput(cmd): a shell command's output lines."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sh_getset[] = {
    {"user_ns", (getter)sh_user_ns, NULL, "The user namespace (__main__.__dict__).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sh_slots[] = {
    {Py_tp_dealloc, shell_dealloc},
    {Py_tp_methods, sh_methods},
    {Py_tp_getset, sh_getset},
    {Py_tp_repr, sh_repr},
    {Py_tp_doc, "What get_ipython() returns in the pyrometer kernel."},
    {0, NULL},
};

static PyType_Spec sh_spec = {
    .name = "_pyrometer_kernel.Shell",
    .basicsize = sizeof(Shell),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = sh_slots,
};

static PyObject *get_ipython(PyObject *unused, PyObject *noargs)
{
    return Py_NewRef(the_shell);
}

static PyMethodDef get_ipython_def = {"get_ipython", get_ipython, METH_NOARGS,
                                      "get_ipython()\n--\n\nThe kernel's shell object."};

int shell_install(PyObject *kmod, PyObject *builtins)
{
    PyObject *type = PyType_FromSpec(&sh_spec);
    if (type == NULL)
        return -1;
    int rc = PyModule_AddObjectRef(kmod, "Shell", type);
    Shell *sh = rc == 0 ? PyObject_New(Shell, (PyTypeObject *)type) : NULL;
    Py_DECREF(type);
    if (sh == NULL)
        return -1;
    sh->kmod = Py_NewRef(kmod);
    the_shell = (PyObject *)sh;
    PyObject *fn = PyCFunction_New(&get_ipython_def, NULL);
    if (fn == NULL)
        return -1;
    rc = PyObject_SetAttrString(builtins, "get_ipython", fn);
    Py_DECREF(fn);
    return rc;
}

void shell_clear(void)
{
    Py_CLEAR(the_shell);
}
