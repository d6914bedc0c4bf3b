/* events.c - the kernel's cell events (IPython's EventManager, in C): the
 * Events type with callbacks, register, unregister and trigger, and the
 * firing around each cell. It imports nothing: the info and result objects
 * are IPython's ExecutionInfo and ExecutionResult once IPython is loaded,
 * and types.SimpleNamespace (the type of sys.implementation) before. */
#include "events.h"

#include <stddef.h>
#include <string.h>

#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *callbacks; /* owned dict: event name -> list of callables */
} Events;

static const char *const event_names[] = {"pre_execute", "pre_run_cell", "post_execute",
                                          "post_run_cell", "shell_initialized"};

/* The one events object and the running cell. Protected by the GIL. */
static PyObject *the_events;
static PyObject *cell_info; /* owned: the info given to pre_run_cell, or NULL */
static struct {
    const char *code, *cell_id; /* borrowed from the request, which outlives the cell */
    int silent, store_history, running;
} cell;

static int ev_traverse(Events *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->callbacks);
    return 0;
}

static int ev_clear(Events *self)
{
    Py_CLEAR(self->callbacks);
    return 0;
}

static void ev_dealloc(Events *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ev_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The callback list of event (borrowed), or NULL with KeyError set. */
static PyObject *list_of(Events *self, PyObject *event)
{
    PyObject *list = PyDict_GetItemWithError(self->callbacks, event);
    if (list == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_KeyError, "Unknown event %S", event);
    if (list != NULL && !PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "callbacks[%R] is not a list", event);
        return NULL;
    }
    return list;
}

/* IPython 8 adapts a callback to its event's prototype (backcall), so that
 * def pre_run_cell(self) still works when the event passes info; IPython 9
 * does not. When IPython 8 is loaded, do as it does: a new reference to the
 * adapted callable, or to fn itself. NULL with an exception set. */
static PyObject *adapt(PyObject *event, PyObject *fn)
{
    PyObject *events = PyDict_GetItemString(PyImport_GetModuleDict(), "IPython.core.events");
    PyObject *protos = events ? PyObject_GetAttrString(events, "available_events") : NULL;
    PyObject *proto = protos && PyDict_Check(protos) ? PyDict_GetItem(protos, event) : NULL;
    PyObject *r = NULL;
    if (proto != NULL && PyObject_HasAttrString(proto, "adapt"))
        r = PyObject_CallMethod(proto, "adapt", "(O)", fn);
    else
        r = Py_NewRef(fn);
    Py_XDECREF(protos);
    if (r == NULL)
        return NULL;
    PyErr_Clear();
    return r;
}

static PyObject *ev_register(Events *self, PyObject *args)
{
    PyObject *event, *fn;
    if (!PyArg_ParseTuple(args, "OO:register", &event, &fn))
        return NULL;
    if (!PyCallable_Check(fn))
        return PyErr_Format(PyExc_TypeError, "Need a callable, got %R", fn);
    PyObject *list = list_of(self, event);
    if (list == NULL)
        return NULL;
    int in = PySequence_Contains(list, fn);
    if (in < 0)
        return NULL;
    if (!in) {
        PyObject *cb = adapt(event, fn);
        int rc = cb ? PyList_Append(list, cb) : -1;
        Py_XDECREF(cb);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* The index in list of fn, or of a callback adapted from it (whose
 * __wrapped__ is fn); -1 when neither is there. -2 with an exception set. */
static Py_ssize_t index_of(PyObject *list, PyObject *fn)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *cb = PyList_GET_ITEM(list, i);
        int eq = PyObject_RichCompareBool(cb, fn, Py_EQ);
        if (eq < 0)
            return -2;
        if (eq)
            return i;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *w = PyObject_GetAttrString(PyList_GET_ITEM(list, i), "__wrapped__");
        if (w == NULL) {
            PyErr_Clear();
            continue;
        }
        int same = w == fn;
        Py_DECREF(w);
        if (same)
            return i;
    }
    return -1;
}

static PyObject *ev_unregister(Events *self, PyObject *args)
{
    PyObject *event, *fn;
    if (!PyArg_ParseTuple(args, "OO:unregister", &event, &fn))
        return NULL;
    PyObject *list = list_of(self, event);
    if (list == NULL)
        return NULL;
    Py_ssize_t i = index_of(list, fn);
    if (i == -2)
        return NULL;
    if (i < 0)
        return PyErr_Format(PyExc_ValueError, "Function %R is not registered as a %S callback", fn,
                            event);
    if (PySequence_DelItem(list, i) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Reports a callback's exception as IPython does ("Error in callback ...")
 * on sys.stderr, with its traceback, and clears it. */
static void report(PyObject *fn, PyObject *event)
{
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (exc != NULL && tb != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    PyObject *err = PySys_GetObject("stderr"); /* borrowed */
    PyObject *msg = PyUnicode_FromFormat("Error in callback %R (for %S):\n", fn, event);
    if (msg != NULL && err != NULL && err != Py_None)
        PyFile_WriteObject(msg, err, Py_PRINT_RAW);
    Py_XDECREF(msg);
    PyErr_Clear();
    PyObject *tbmod = exc ? PyImport_ImportModule("traceback") : NULL;
    PyObject *r = tbmod ? PyObject_CallMethod(tbmod, "print_exception", "(O)", exc) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(tbmod);
    Py_XDECREF(exc);
    PyErr_Clear();
}

/* Calls every callback of event with args (a copy of the list, so a
 * callback may unregister itself). Returns -1 only for an unknown event. */
static int trigger(Events *self, PyObject *event, PyObject *args, PyObject *kw)
{
    PyObject *list = list_of(self, event);
    if (list == NULL)
        return -1;
    if (PyList_GET_SIZE(list) == 0)
        return 0;
    PyObject *copy = PyList_GetSlice(list, 0, PyList_GET_SIZE(list));
    if (copy == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(copy); i++) {
        PyObject *fn = PyList_GET_ITEM(copy, i);
        PyObject *r = PyObject_Call(fn, args, kw);
        if (r == NULL) {
            /* As IPython: Exception and KeyboardInterrupt are reported;
             * SystemExit and the like go on up. */
            if (!PyErr_ExceptionMatches(PyExc_Exception) &&
                !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
                Py_DECREF(copy);
                return -1;
            }
            report(fn, event);
        }
        Py_XDECREF(r);
    }
    Py_DECREF(copy);
    return 0;
}

static PyObject *ev_trigger(Events *self, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "trigger(event, *args, **kwargs) needs an event");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (rest == NULL)
        return NULL;
    int rc = trigger(self, PyTuple_GET_ITEM(args, 0), rest, kw);
    Py_DECREF(rest);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *ev_repr(Events *self)
{
    return PyUnicode_FromString("<pyrometer kernel events>");
}

static PyMethodDef ev_methods[] = {
    {"register", (PyCFunction)ev_register, METH_VARARGS,
     "register(event, function)\n--\n\nCall function at every event (pre_execute, pre_run_cell, "
     "post_execute, post_run_cell, shell_initialized)."},
    {"unregister", (PyCFunction)ev_unregister, METH_VARARGS,
     "unregister(event, function)\n--\n\nStop calling function at event."},
    {"trigger", (PyCFunction)(void (*)(void))ev_trigger, METH_VARARGS | METH_KEYWORDS,
     "trigger(event, *args, **kwargs)\n--\n\nCall every callback of event; one that raises is "
     "reported and the others still run."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ev_members[] = {
    {"callbacks", T_OBJECT_EX, offsetof(Events, callbacks), READONLY,
     "event name -> list of callbacks"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot ev_slots[] = {
    {Py_tp_dealloc, ev_dealloc},
    {Py_tp_traverse, ev_traverse},
    {Py_tp_clear, ev_clear},
    {Py_tp_methods, ev_methods},
    {Py_tp_members, ev_members},
    {Py_tp_repr, ev_repr},
    {Py_tp_doc, "get_ipython().events: callbacks around every cell, as IPython's EventManager."},
    {0, NULL},
};

static PyType_Spec ev_spec = {
    .name = "_pyrometer_kernel.Events",
    .basicsize = sizeof(Events),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ev_slots,
};

int events_install(PyObject *kmod)
{
    PyObject *type = PyType_FromSpec(&ev_spec);
    if (type == NULL)
        return -1;
    int rc = PyModule_AddObjectRef(kmod, "Events", type);
    Events *ev = rc == 0 ? PyObject_GC_New(Events, (PyTypeObject *)type) : NULL;
    Py_DECREF(type);
    if (ev == NULL)
        return -1;
    ev->callbacks = PyDict_New();
    PyObject_GC_Track(ev);
    the_events = (PyObject *)ev;
    if (ev->callbacks == NULL)
        return -1;
    for (size_t i = 0; i < sizeof event_names / sizeof event_names[0]; i++) {
        PyObject *list = PyList_New(0);
        rc = list ? PyDict_SetItemString(ev->callbacks, event_names[i], list) : -1;
        Py_XDECREF(list);
        if (rc < 0)
            return -1;
    }
    return 0;
}

PyObject *events_object(void)
{
    return the_events;
}

/* 1 when event has callbacks (no exception is left set). */
static int wanted(const char *event)
{
    if (the_events == NULL)
        return 0;
    PyObject *list = PyDict_GetItemString(((Events *)the_events)->callbacks, event);
    return list != NULL && PyList_Check(list) && PyList_GET_SIZE(list) > 0;
}

void events_trigger(const char *event, PyObject *args)
{
    if (!wanted(event))
        return;
    PyObject *name = PyUnicode_FromString(event);
    if (name == NULL || trigger((Events *)the_events, name, args, NULL) < 0)
        PyErr_Clear(); /* SystemExit from a callback does not end the kernel */
    Py_XDECREF(name);
}

/* IPython's class `name` (ExecutionInfo, ExecutionResult) when IPython is
 * loaded, else types.SimpleNamespace (the type of sys.implementation).
 * Returns a new reference, or NULL with an exception set. */
static PyObject *record_type(const char *name)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    PyObject *ish = PyDict_GetItemString(modules, "IPython.core.interactiveshell");
    if (ish != NULL) {
        PyObject *cls = PyObject_GetAttrString(ish, name);
        if (cls != NULL)
            return cls;
        PyErr_Clear();
    }
    PyObject *impl = PySys_GetObject("implementation"); /* borrowed */
    if (impl == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lost sys.implementation");
        return NULL;
    }
    return Py_NewRef((PyObject *)Py_TYPE(impl));
}

/* 1 when the record type is types.SimpleNamespace (built from keywords). */
static int is_namespace(PyObject *cls)
{
    PyObject *impl = PySys_GetObject("implementation");
    return impl != NULL && cls == (PyObject *)Py_TYPE(impl);
}

/* Sets the attributes of kw on obj. Returns 0 or -1. */
static int set_attrs(PyObject *obj, PyObject *kw)
{
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kw, &pos, &k, &v))
        if (PyObject_SetAttr(obj, k, v) < 0)
            return -1;
    return 0;
}

/* A new info record for the cell, or NULL with an exception set. */
static PyObject *make_info(const char *code, int silent, int store_history, const char *cell_id)
{
    PyObject *cls = record_type("ExecutionInfo");
    if (cls == NULL)
        return NULL;
    PyObject *info = NULL, *kw = Py_BuildValue("{s:s, s:O, s:O, s:O, s:z}", "raw_cell", code,
                                               "store_history", store_history ? Py_True : Py_False,
                                               "silent", silent ? Py_True : Py_False,
                                               "shell_futures", Py_True, "cell_id", cell_id);
    if (kw == NULL)
        goto done;
    if (is_namespace(cls)) {
        PyObject *empty = PyTuple_New(0);
        info = empty ? PyObject_Call(cls, empty, kw) : NULL;
        Py_XDECREF(empty);
    } else {
        info = PyObject_CallFunction(cls, "OOOOO", PyDict_GetItemString(kw, "raw_cell"),
                                     PyDict_GetItemString(kw, "store_history"),
                                     PyDict_GetItemString(kw, "silent"), Py_True,
                                     PyDict_GetItemString(kw, "cell_id"));
    }
done:
    Py_XDECREF(kw);
    Py_DECREF(cls);
    return info;
}

void events_pre_cell(const char *code, int silent, int store_history, const char *cell_id)
{
    Py_CLEAR(cell_info);
    cell.code = code;
    cell.cell_id = cell_id;
    cell.silent = silent;
    cell.store_history = store_history;
    cell.running = 1;
    if (wanted("pre_execute")) {
        PyObject *none = PyTuple_New(0);
        if (none != NULL)
            events_trigger("pre_execute", none);
        Py_XDECREF(none);
    }
    if (!silent && wanted("pre_run_cell")) {
        cell_info = make_info(code, silent, store_history, cell_id);
        PyObject *args = cell_info ? PyTuple_Pack(1, cell_info) : NULL;
        if (args != NULL)
            events_trigger("pre_run_cell", args);
        Py_XDECREF(args);
    }
    PyErr_Clear();
}

void events_post_cell(long execution_count, PyObject *value, PyObject *exc)
{
    PyObject *none = NULL, *cls = NULL, *kw = NULL, *result = NULL, *args = NULL;
    int silent = 0;
    if (wanted("post_execute")) {
        none = PyTuple_New(0);
        if (none != NULL)
            events_trigger("post_execute", none);
    }
    /* A callback registered during the cell sees its end, as in IPython. */
    silent = cell.silent;
    if (!cell.running || silent || !wanted("post_run_cell"))
        goto done;
    if (cell_info == NULL)
        cell_info = make_info(cell.code, cell.silent, cell.store_history, cell.cell_id);
    if (cell_info == NULL)
        goto done;
    cls = record_type("ExecutionResult");
    kw = cls ? Py_BuildValue("{s:O, s:l, s:O, s:O, s:O}", "info", cell_info, "execution_count",
                             execution_count, "result", value ? value : Py_None,
                             "error_before_exec", Py_None, "error_in_exec", exc ? exc : Py_None)
             : NULL;
    if (kw == NULL)
        goto done;
    if (is_namespace(cls)) {
        if (PyDict_SetItemString(kw, "success", exc ? Py_False : Py_True) < 0)
            goto done;
        PyObject *empty = PyTuple_New(0);
        result = empty ? PyObject_Call(cls, empty, kw) : NULL;
        Py_XDECREF(empty);
    } else {
        result = PyObject_CallOneArg(cls, cell_info);
        if (result != NULL && set_attrs(result, kw) < 0)
            Py_CLEAR(result);
    }
    args = result ? PyTuple_Pack(1, result) : NULL;
    if (args != NULL)
        events_trigger("post_run_cell", args);
done:
    PyErr_Clear();
    Py_CLEAR(cell_info);
    cell.running = 0;
    cell.code = cell.cell_id = NULL;
    Py_XDECREF(none);
    Py_XDECREF(cls);
    Py_XDECREF(kw);
    Py_XDECREF(result);
    Py_XDECREF(args);
}

void events_clear(void)
{
    Py_CLEAR(cell_info);
    Py_CLEAR(the_events);
}
