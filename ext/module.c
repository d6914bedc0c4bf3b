/* module.c - init of the `pyrometer` extension module and its front doors.
 *
 * Owns the MAGICS registry (name -> (kinds, callable)) and
 * load_ipython_extension(), which hands the same magics to IPython. The kernel
 * reads MAGICS directly; `import pyrometer` exposes the plain API.
 */
#include "module.h"

#include <string.h>

/* ---- the IPython front door ------------------------------------------- */

/* A callable that IPython calls as f(line) or f(line, cell); it forwards to
 * a pyrometer magic with the shell's user namespace and a raw display. */
typedef struct {
    PyObject_HEAD
    PyObject *magic;   /* owned: the pyrometer magic callable */
    PyObject *shell;   /* owned: the InteractiveShell */
    PyObject *display; /* owned: callable(bundle) -> display(bundle, raw=True) */
    PyObject *doc;     /* owned: the magic's help (MAGIC_HELP), what %name? shows */
} IPythonMagic;

static int ipm_traverse(IPythonMagic *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->magic);
    Py_VISIT(self->shell);
    Py_VISIT(self->display);
    Py_VISIT(self->doc);
    return 0;
}

static int ipm_clear(IPythonMagic *self)
{
    Py_CLEAR(self->magic);
    Py_CLEAR(self->shell);
    Py_CLEAR(self->display);
    Py_CLEAR(self->doc);
    return 0;
}

static void ipm_dealloc(IPythonMagic *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ipm_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* If the pending exception is a pyrometer.UsageError, replace it with
 * IPython's UsageError, which IPython prints as a short message. The pending
 * exception is fetched first: the lookups below may clear it. */
static void to_ipython_usage_error(void)
{
    PyObject *exc, *val, *tb, *mod = NULL, *ours = NULL, *errmod = NULL, *theirs = NULL;
    PyObject *msg = NULL;

    PyErr_Fetch(&exc, &val, &tb);
    PyErr_NormalizeException(&exc, &val, &tb);
    mod = PyImport_ImportModule("pyrometer");
    ours = mod ? PyObject_GetAttrString(mod, "UsageError") : NULL;
    if (ours == NULL || exc == NULL || !PyErr_GivenExceptionMatches(exc, ours))
        goto restore;
    errmod = PyImport_ImportModule("IPython.core.error");
    theirs = errmod ? PyObject_GetAttrString(errmod, "UsageError") : NULL;
    msg = theirs && val ? PyObject_Str(val) : NULL;
    if (msg == NULL)
        goto restore;
    PyErr_Clear();
    PyErr_SetObject(theirs, msg);
    Py_XDECREF(exc);
    Py_XDECREF(val);
    Py_XDECREF(tb);
    goto done;
restore:
    PyErr_Clear();
    PyErr_Restore(exc, val, tb);
done:
    Py_XDECREF(mod);
    Py_XDECREF(ours);
    Py_XDECREF(errmod);
    Py_XDECREF(theirs);
    Py_XDECREF(msg);
}

/* 1 when line is "-h" or "--help" alone. */
static int help_asked(PyObject *line)
{
    PyObject *s = PyObject_CallMethod(line, "strip", NULL);
    const char *t = s ? PyUnicode_AsUTF8(s) : NULL;
    int r = t && (strcmp(t, "-h") == 0 || strcmp(t, "--help") == 0);
    Py_XDECREF(s);
    PyErr_Clear();
    return r;
}

static PyObject *ipm_call(IPythonMagic *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"line", "cell", NULL};
    PyObject *line = NULL, *cell = Py_None, *ns = NULL, *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "U|O:magic", kwlist, &line, &cell))
        return NULL;
    if (cell == Py_None && help_asked(line)) { /* %lprun -h: the help, as the kernel prints it */
        PyObject *builtins = PyImport_ImportModule("builtins");
        PyObject *print = builtins && self->doc ? PyObject_GetAttrString(builtins, "print") : NULL;
        PyObject *pargs = print ? PyTuple_Pack(1, self->doc) : NULL;
        PyObject *kw = pargs ? Py_BuildValue("{s:s}", "end", "") : NULL; /* the text ends in \n */
        PyObject *r = kw ? PyObject_Call(print, pargs, kw) : NULL;
        Py_XDECREF(builtins);
        Py_XDECREF(print);
        Py_XDECREF(pargs);
        Py_XDECREF(kw);
        if (r == NULL && !PyErr_Occurred())
            Py_RETURN_NONE;
        return r;
    }
    ns = PyObject_GetAttrString(self->shell, "user_ns");
    if (ns == NULL)
        return NULL;
    result = PyObject_CallFunctionObjArgs(self->magic, line, cell, ns, self->display, NULL);
    Py_DECREF(ns);
    if (result == NULL)
        to_ipython_usage_error();
    return result;
}

/* __doc__ of each bound magic: its own help text, so IPython's %lprun? and
 * %lprun -h show what the kernel shows. */
static PyObject *ipm_doc(IPythonMagic *self, void *closure)
{
    return Py_NewRef(self->doc ? self->doc : Py_None);
}

static PyGetSetDef ipm_getset[] = {
    {"__doc__", (getter)ipm_doc, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ipm_slots[] = {
    {Py_tp_getset, ipm_getset}, {Py_tp_dealloc, ipm_dealloc}, {Py_tp_traverse, ipm_traverse},
    {Py_tp_clear, ipm_clear},   {Py_tp_call, ipm_call},       {0, NULL},
};

static PyType_Spec ipm_spec = {
    .name = "pyrometer._IPythonMagic",
    .basicsize = sizeof(IPythonMagic),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ipm_slots,
};

/* display(bundle) for IPython: IPython.display.display(bundle, raw=True). */
static PyObject *make_ipython_display(void)
{
    PyObject *mod = NULL, *display = NULL, *functools = NULL, *kw = NULL, *partial = NULL;

    mod = PyImport_ImportModule("IPython.display");
    if (mod == NULL)
        goto error;
    display = PyObject_GetAttrString(mod, "display");
    if (display == NULL)
        goto error;
    functools = PyImport_ImportModule("functools");
    if (functools == NULL)
        goto error;
    kw = Py_BuildValue("{s:O}", "raw", Py_True);
    if (kw == NULL)
        goto error;
    PyObject *partial_type = PyObject_GetAttrString(functools, "partial");
    if (partial_type == NULL)
        goto error;
    PyObject *args = PyTuple_Pack(1, display);
    if (args == NULL) {
        Py_DECREF(partial_type);
        goto error;
    }
    partial = PyObject_Call(partial_type, args, kw);
    Py_DECREF(args);
    Py_DECREF(partial_type);
error:
    Py_XDECREF(mod);
    Py_XDECREF(display);
    Py_XDECREF(functools);
    Py_XDECREF(kw);
    return partial;
}

PyDoc_STRVAR(
    load_ipython_extension_doc,
    "load_ipython_extension(ipython)\n--\n\n"
    "Register pyrometer's magics (%prun, %lprun, %memit, %sample, ...) with an IPython shell.");

static PyObject *load_ipython_extension(PyObject *module, PyObject *shell)
{
    PyObject *magics = NULL, *display = NULL, *ipm_type = NULL, *register_fn = NULL;
    PyObject *key, *value;
    Py_ssize_t pos = 0;

    magics = PyObject_GetAttrString(module, "MAGICS");
    if (magics == NULL || !PyDict_Check(magics)) {
        if (magics != NULL)
            PyErr_SetString(PyExc_TypeError, "pyrometer.MAGICS must be a dict");
        goto error;
    }
    display = make_ipython_display();
    if (display == NULL)
        goto error;
    ipm_type = PyObject_GetAttrString(module, "_IPythonMagic");
    if (ipm_type == NULL)
        goto error;
    register_fn = PyObject_GetAttrString(shell, "register_magic_function");
    if (register_fn == NULL)
        goto error;
    PyObject *help = PyObject_GetAttrString(module, "MAGIC_HELP");
    if (help == NULL)
        goto error;
    Py_DECREF(help); /* the module keeps it */
    while (PyDict_Next(magics, &pos, &key, &value)) {
        PyObject *kinds, *callable;
        if (!PyArg_ParseTuple(value, "UO:MAGICS entry", &kinds, &callable))
            goto error;
        IPythonMagic *ipm = PyObject_GC_New(IPythonMagic, (PyTypeObject *)ipm_type);
        if (ipm == NULL)
            goto error;
        ipm->magic = Py_NewRef(callable);
        ipm->shell = Py_NewRef(shell);
        ipm->display = Py_NewRef(display);
        ipm->doc = PyDict_GetItem(help, key);
        if (ipm->doc == NULL)
            ipm->doc = PyObject_GetAttrString(callable, "__doc__");
        else
            Py_INCREF(ipm->doc);
        PyErr_Clear();
        PyObject_GC_Track(ipm);
        PyObject *res =
            PyObject_CallFunctionObjArgs(register_fn, (PyObject *)ipm, kinds, key, NULL);
        Py_DECREF(ipm);
        if (res == NULL)
            goto error;
        Py_DECREF(res);
    }
    Py_DECREF(magics);
    Py_DECREF(display);
    Py_DECREF(ipm_type);
    Py_DECREF(register_fn);
    Py_RETURN_NONE;
error:
    Py_XDECREF(magics);
    Py_XDECREF(display);
    Py_XDECREF(ipm_type);
    Py_XDECREF(register_fn);
    return NULL;
}

/* ---- registry ------------------------------------------------------------ */

int module_add_magic(PyObject *module, const char *name, const char *kinds, PyObject *callable)
{
    PyObject *magics = PyObject_GetAttrString(module, "MAGICS");
    if (magics == NULL)
        return -1;
    PyObject *entry = Py_BuildValue("(sO)", kinds, callable);
    if (entry == NULL) {
        Py_DECREF(magics);
        return -1;
    }
    int rc = PyDict_SetItemString(magics, name, entry);
    Py_DECREF(entry);
    Py_DECREF(magics);
    return rc;
}

int module_add_magics(PyObject *module, PyMethodDef *defs, const char *const *kinds)
{
    for (int i = 0; defs[i].ml_name != NULL; i++) {
        PyObject *fn = PyCFunction_NewEx(&defs[i], module, NULL);
        if (fn == NULL)
            return -1;
        int rc = module_add_magic(module, defs[i].ml_name, kinds[i], fn);
        Py_DECREF(fn);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Every option table registered, in order (the fuzzer of ext/options.c
 * drives each). Written once per process at module init, under the GIL. */
static struct {
    const char *name;
    const options_magic *m;
} option_tables[32];
static size_t n_option_tables;

const options_magic *module_option_table(size_t i, const char **name)
{
    if (i >= n_option_tables)
        return NULL;
    if (name != NULL)
        *name = option_tables[i].name;
    return option_tables[i].m;
}

static void remember_table(const char *name, const options_magic *m)
{
    for (size_t i = 0; i < n_option_tables; i++)
        if (option_tables[i].m == m)
            return; /* the module was initialised again (a subinterpreter) */
    if (n_option_tables < sizeof option_tables / sizeof option_tables[0])
        option_tables[n_option_tables++] = (typeof(option_tables[0])){name, m};
}

int module_add_magic_help(PyObject *module, const char *name, const options_magic *m)
{
    remember_table(name, m);
    PyObject *help = PyObject_GetAttrString(module, "MAGIC_HELP");
    PyObject *text = help ? options_help(m) : NULL;
    int rc = text ? PyDict_SetItemString(help, name, text) : -1;
    Py_XDECREF(help);
    Py_XDECREF(text);
    return rc;
}

/* ---- module init --------------------------------------------------------- */

static int pyrometer_exec(PyObject *module)
{
    PyObject *magics = PyDict_New();
    if (magics == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "MAGICS", magics) < 0) {
        Py_DECREF(magics);
        return -1;
    }
    Py_DECREF(magics);
    PyObject *help = PyDict_New();
    if (help == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "MAGIC_HELP", help) < 0) {
        Py_DECREF(help);
        return -1;
    }
    Py_DECREF(help);
    PyObject *ipm_type = PyType_FromModuleAndSpec(module, &ipm_spec, NULL);
    if (ipm_type == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "_IPythonMagic", ipm_type) < 0) {
        Py_DECREF(ipm_type);
        return -1;
    }
    Py_DECREF(ipm_type);
    PyObject *usage = PyErr_NewExceptionWithDoc(
        "pyrometer.UsageError",
        "A magic was called with bad options or a target it cannot profile.", PyExc_ValueError,
        NULL);
    if (usage == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "UsageError", usage) < 0) {
        Py_DECREF(usage);
        return -1;
    }
    Py_DECREF(usage);
    if (PyModule_AddStringConstant(module, "__version__", PYROMETER_VERSION) < 0)
        return -1;
    if (funcprof_module_exec(module) < 0)
        return -1;
    if (lineprof_module_exec(module) < 0)
        return -1;
    if (memprof_module_exec(module) < 0)
        return -1;
    if (sampler_module_exec(module) < 0)
        return -1;
    return 0;
}

static PyMethodDef pyrometer_methods[] = {
    {"load_ipython_extension", load_ipython_extension, METH_O, load_ipython_extension_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot pyrometer_slots[] = {
    {Py_mod_exec, pyrometer_exec},
    {0, NULL},
};

PyDoc_STRVAR(pyrometer_doc,
             "pyrometer: native function, line, memory and sampling profilers for notebooks.\n\n"
             "In IPython or ipykernel: %load_ext pyrometer, then %prun, %lprun, "
             "%memit, %mprun, %sample.");

static struct PyModuleDef pyrometer_module = {
    PyModuleDef_HEAD_INIT, .m_name = "pyrometer",          .m_doc = pyrometer_doc,
    .m_size = 0,           .m_methods = pyrometer_methods, .m_slots = pyrometer_slots,
};

PyMODINIT_FUNC PyInit_pyrometer(void)
{
    return PyModuleDef_Init(&pyrometer_module);
}
