/* shell.c - the object get_ipython() returns in the kernel. It offers the
 * part of IPython's InteractiveShell that notebook code calls directly:
 * run_line_magic, run_cell_magic, magic, system, getoutput, user_ns, events,
 * kernel, set_next_input, showtraceback, object_inspect. Any other
 * InteractiveShell attribute (config, magics_manager, ...) comes from
 * IPython's own shell, brought up on demand by ipybridge.c. Its type is
 * _pyrometer_kernel.Shell. */
#include "shell.h"

#include <string.h>

#include "comms.h"
#include "events.h"
#include "interp.h"
#include "introspect.h"
#include "ipybridge.h"
#include "magics.h"
#include "session.h"

typedef struct {
    PyObject_HEAD
    PyObject *kmod;   /* owned: the _pyrometer_kernel module */
    PyObject *kernel; /* owned: what .kernel returns, made on first use, or NULL */
} Shell;

/* The one shell. Protected by the GIL. */
static PyObject *the_shell;

static void shell_dealloc(Shell *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(self->kmod);
    Py_XDECREF(self->kernel);
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

static PyObject *sh_events(Shell *self, void *closure)
{
    PyObject *ev = events_object();
    if (ev == NULL) {
        PyErr_SetString(PyExc_AttributeError, "events");
        return NULL;
    }
    return Py_NewRef(ev);
}

/* .kernel: what code that looks for ipykernel's kernel object finds, with
 * the fields of kernel_info_reply (implementation, language_info, banner,
 * ...). A types.SimpleNamespace, so other parts may add to it. */
static PyObject *sh_kernel(Shell *self, void *closure)
{
    if (self->kernel != NULL)
        return Py_NewRef(self->kernel);
    json_t *info = interp_kernel_info();
    char *text = info ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    if (text == NULL)
        return PyErr_NoMemory();
    PyObject *json = PyImport_ImportModule("json");
    PyObject *fields = json ? PyObject_CallMethod(json, "loads", "s", text) : NULL;
    free(text);
    Py_XDECREF(json);
    if (fields == NULL)
        return NULL;
    int bad = PyDict_DelItemString(fields, "status") < 0;
    PyObject *impl = PySys_GetObject("implementation"); /* borrowed: its type is SimpleNamespace */
    PyObject *empty = !bad && impl ? PyTuple_New(0) : NULL;
    PyObject *k = empty ? PyObject_Call((PyObject *)Py_TYPE(impl), empty, fields) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(fields);
    /* get_parent(), as ipykernel's kernel has: ipywidgets' Output widget
     * asks it for the request whose output it captures. */
    PyObject *gp = k ? comms_get_parent_function() : NULL;
    int bad_gp = gp == NULL || PyObject_SetAttrString(k, "get_parent", gp) < 0;
    Py_XDECREF(gp);
    if (bad_gp)
        Py_CLEAR(k);
    if (k == NULL)
        return NULL;
    self->kernel = k;
    return Py_NewRef(k);
}

/* set_next_input(text, replace=False): a set_next_input payload; the
 * frontend puts text in the next cell (or this one, with replace). */
static PyObject *sh_set_next_input(Shell *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"text", "replace", NULL};
    const char *text;
    int replace = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|p:set_next_input", kwlist, &text, &replace))
        return NULL;
    json_t *item =
        json_pack("{s:s, s:s, s:b}", "source", "set_next_input", "text", text, "replace", replace);
    if (item == NULL)
        return PyErr_NoMemory();
    session_add_payload(item);
    Py_RETURN_NONE;
}

/* showtraceback(exc_tuple=None, ...): publishes the exception being
 * handled (or exc_tuple's) as an error message, as the kernel shows a
 * cell's. */
static PyObject *sh_showtraceback(Shell *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {
        "exc_tuple", "filename", "tb_offset", "exception_only", "running_compiled_code", NULL};
    PyObject *tuple = Py_None, *filename = Py_None, *offset = Py_None, *only = Py_False;
    PyObject *compiled = Py_False, *exc = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOOOO:showtraceback", kwlist, &tuple, &filename,
                                     &offset, &only, &compiled))
        return NULL;
    if (tuple != Py_None) {
        if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != 3) {
            PyErr_SetString(PyExc_TypeError, "exc_tuple must be (type, value, traceback)");
            return NULL;
        }
        exc = Py_NewRef(PyTuple_GET_ITEM(tuple, 1));
        if (PyExceptionInstance_Check(exc) && PyTuple_GET_ITEM(tuple, 2) != Py_None &&
            PyException_SetTraceback(exc, PyTuple_GET_ITEM(tuple, 2)) < 0) {
            Py_DECREF(exc);
            return NULL;
        }
    } else {
        exc = PyErr_GetHandledException();
    }
    if (exc == NULL || exc == Py_None || !PyExceptionInstance_Check(exc)) {
        Py_XDECREF(exc);
        PySys_WriteStderr("No traceback available to show.\n");
        Py_RETURN_NONE;
    }
    json_t *content = interp_error_content(exc);
    Py_DECREF(exc);
    if (content == NULL)
        return PyErr_NoMemory();
    interp_publish("error", content);
    Py_RETURN_NONE;
}

/* object_inspect(oname, detail_level=0): IPython's info dict, with the
 * fields notebook code reads (found, name, ismagic, type_name,
 * string_form, docstring) and the text inspect_request would show. */
static PyObject *sh_object_inspect(Shell *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"oname", "detail_level", NULL};
    const char *oname;
    int level = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|i:object_inspect", kwlist, &oname, &level))
        return NULL;
    while (*oname == ' ')
        oname++;
    int ismagic = oname[0] == '%';
    char *text = introspect_text(oname, level, 0);
    if (text == NULL && PyErr_Occurred())
        return NULL;
    PyObject *info = Py_BuildValue("{s:s, s:O, s:O, s:O, s:z}", "name", oname, "found",
                                   text ? Py_True : Py_False, "isalias", Py_False, "ismagic",
                                   ismagic ? Py_True : Py_False, "text/plain", text);
    free(text);
    if (info == NULL)
        return NULL;
    PyObject *obj = ismagic ? NULL : introspect_object(oname);
    PyObject *type = obj ? PyType_GetName(Py_TYPE(obj)) : Py_NewRef(Py_None);
    PyObject *str = obj ? PyObject_Str(obj) : Py_NewRef(Py_None);
    PyObject *ns = PyUnicode_FromString(obj ? "Interactive" : "");
    PyObject *doc = NULL;
    if (ismagic) {
        int cell = oname[1] == '%';
        doc = magics_help(oname + 1 + cell, cell);
    } else if (obj != NULL) {
        PyObject *inspect = PyImport_ImportModule("inspect");
        doc = inspect ? PyObject_CallMethod(inspect, "getdoc", "(O)", obj) : NULL;
        Py_XDECREF(inspect);
    }
    PyErr_Clear();
    if (PyDict_SetItemString(info, "type_name", type ? type : Py_None) < 0 ||
        PyDict_SetItemString(info, "string_form", str ? str : Py_None) < 0 ||
        PyDict_SetItemString(info, "docstring", doc ? doc : Py_None) < 0 ||
        PyDict_SetItemString(info, "namespace", obj && ns ? ns : Py_None) < 0)
        Py_CLEAR(info);
    Py_XDECREF(type);
    Py_XDECREF(str);
    Py_XDECREF(ns);
    Py_XDECREF(doc);
    Py_XDECREF(obj);
    return info;
}

/* Attributes the shell does not have are IPython's InteractiveShell's: the
 * bridge brings IPython up for the ones in its list (config,
 * magics_manager, register_magic_function, ...), or for any once it is up. */
static PyObject *sh_getattro(PyObject *self, PyObject *name)
{
    PyObject *r = PyObject_GenericGetAttr(self, name);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return r;
    const char *n = PyUnicode_AsUTF8(name);
    if (n == NULL || n[0] == '_' || !(ipybridge_active() || ipybridge_shell_attr(n)))
        return NULL; /* the AttributeError stands (n NULL: a new error) */
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyObject *shell = ipybridge_shell();
    if (shell == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ImportError)) { /* no IPython here */
            PyErr_Restore(t, v, tb);
            return NULL;
        }
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        return NULL;
    }
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    return PyObject_GetAttr(shell, name);
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
    {"set_next_input", (PyCFunction)(void (*)(void))sh_set_next_input, METH_VARARGS | METH_KEYWORDS,
     "set_next_input(text, replace=False)\n--\n\nPut text in the next input cell (a payload)."},
    {"showtraceback", (PyCFunction)(void (*)(void))sh_showtraceback, METH_VARARGS | METH_KEYWORDS,
     "showtraceback(exc_tuple=None, filename=None, tb_offset=None, exception_only=False, "
     "running_compiled_code=False)\n--\n\nShow the exception being handled as an error output."},
    {"object_inspect", (PyCFunction)(void (*)(void))sh_object_inspect, METH_VARARGS | METH_KEYWORDS,
     "object_inspect(oname, detail_level=0)\n--\n\nWhat is known about a name (a dict)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sh_getset[] = {
    {"user_ns", (getter)sh_user_ns, NULL, "The user namespace (__main__.__dict__).", NULL},
    {"events", (getter)sh_events, NULL, "Callbacks around every cell (register, trigger).", NULL},
    {"kernel", (getter)sh_kernel, NULL, "The kernel: implementation, language_info, ...", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sh_slots[] = {
    {Py_tp_dealloc, shell_dealloc},
    {Py_tp_methods, sh_methods},
    {Py_tp_getset, sh_getset},
    {Py_tp_repr, sh_repr},
    {Py_tp_getattro, sh_getattro},
    {Py_tp_doc, "What get_ipython() returns in the pyrometer kernel."},
    {0, NULL},
};

static PyType_Spec sh_spec = {
    .name = "_pyrometer_kernel.ZMQInteractiveShell", /* the name code checks for a notebook */
    .basicsize = sizeof(Shell),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = sh_slots,
};

PyObject *shell_object(void)
{
    return the_shell;
}

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
    sh->kernel = NULL;
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
