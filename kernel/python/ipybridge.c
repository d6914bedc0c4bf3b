/* ipybridge.c - IPython's shell, made on demand and bound to the kernel.
 *
 * Owns the list of the magics that only IPython has, and the one
 * InteractiveShell (a subclass whose display hook, display publisher and
 * _showtraceback publish through the kernel). Once it is up, IPython's
 * magics and extensions run as under ipykernel: they share the user
 * namespace, In/Out (IPython's history manager reads the kernel's lists),
 * the events object that the kernel fires around every cell, and
 * pyrometer's own magics (loaded into it with the IPython front door).
 */
#include "ipybridge.h"

#include <stdio.h>
#include <string.h>

#include "events.h"
#include "history.h"
#include "interp.h"
#include "session.h"
#include "shell.h"
#include "stdmagics_hooks.h"
#include "streams.h"

/* The shell. Protected by the GIL. */
static PyObject *the_shell;        /* owned: the InteractiveShell, or NULL */
static int making;                 /* make_shell is running */
static PyObject *orig_instance;    /* owned: SingletonConfigurable's instance classmethod */
static PyObject *orig_get_ipython; /* owned: IPython.core.getipython.get_ipython */

/* IPython 8/9's magics (with %store of the storemagic extension) that the
 * kernel does not have natively; the kernel's own win a name clash, since
 * they are looked up first. Left out: what changes only IPython's own input
 * handling (%autocall, %automagic, %autoawait, %doctest_mode). */
static const char *const line_magics[] = {
    "alias",
    "alias_magic",
    "bookmark",
    "cat",
    "code_wrap",
    "colors",
    "conda",
    "config",
    "cp",
    "debug",
    "dhist",
    "dirs",
    "ed",
    "edit",
    "gui",
    "hist",
    "history",
    "killbgscripts",
    "ldir",
    "lf",
    "lk",
    "ll",
    "load",
    "loadpy",
    "logoff",
    "logon",
    "logstart",
    "logstate",
    "logstop",
    "ls",
    "lx",
    "macro",
    "mamba",
    "micromamba",
    "mkdir",
    "mv",
    "notebook",
    "page",
    "pastebin",
    "pdb",
    "pdef",
    "pdoc",
    "pfile",
    "pinfo",
    "pinfo2",
    "pip",
    "popd",
    "pprint",
    "precision",
    "psearch",
    "psource",
    "pushd",
    "pycat",
    "pylab",
    "quickref",
    "recall",
    "rehashx",
    "reload_ext",
    "rep",
    "rerun",
    "reset_selective",
    "rm",
    "rmdir",
    "run",
    "save",
    "sc",
    "set_env",
    "store",
    "sx",
    "system",
    "tb",
    "unalias",
    "unload_ext",
    "uv",
    "xdel",
    "xmode",
    NULL,
};
static const char *const cell_magics[] = {
    "HTML",   "SVG",        "bash",      "capture", "code_wrap", "debug", "file",
    "html",   "javascript", "js",        "latex",   "markdown",  "perl",  "pypy",
    "python", "python2",    "python3",   "ruby",    "script",    "sh",    "svg",
    "sx",     "system",     "writefile", NULL,
};

/* The InteractiveShell attributes that bring IPython up when code asks
 * get_ipython() for them. */
static const char *const shell_attrs[] = {
    "magics_manager",
    "register_magic_function",
    "extension_manager",
    "config",
    "display_formatter",
    "history_manager",
    "run_cell",
    "ev",
    "ex",
    "push",
    "find_line_magic",
    "find_cell_magic",
    "find_magic",
    "user_global_ns",
    "user_ns_hidden",
    "displayhook",
    "display_pub",
    "InteractiveTB",
    "debugger",
    "db",
    "prefilter_manager",
    "input_transformer_manager",
    "transform_cell",
    "execution_count",
    "set_hook",
    "define_macro",
    "payload_manager",
    "ask_yes_no",
    "var_expand",
    "mktempfile",
    "safe_execfile",
    "configurables",
    "profile_dir",
    "ipython_dir",
    "enable_matplotlib",
    "enable_pylab",
    "run_code",
    "run_ast_nodes",
    "drop_by_id",
    "del_var",
    "object_inspect_mime",
    "object_inspect_text",
    "pycolorize",
    "alias_manager",
    "showsyntaxerror",
    "excepthook",
    "compile",
    "builtin_trap",
    "display_trap",
    "events_manager",
    NULL,
};

static int in_list(const char *const *list, const char *name)
{
    for (; *list; list++)
        if (strcmp(*list, name) == 0)
            return 1;
    return 0;
}

int ipybridge_active(void)
{
    return the_shell != NULL;
}

int ipybridge_shell_attr(const char *attr)
{
    return in_list(shell_attrs, attr);
}

/* The magic callable IPython has for name, or NULL (no exception set). */
static PyObject *find_magic(const char *name, int cell)
{
    PyObject *fn =
        PyObject_CallMethod(the_shell, cell ? "find_cell_magic" : "find_line_magic", "s", name);
    if (fn == Py_None)
        Py_CLEAR(fn);
    PyErr_Clear();
    return fn;
}

int ipybridge_has_magic(const char *name, int cell)
{
    if (the_shell != NULL) {
        PyObject *fn = find_magic(name, cell);
        Py_XDECREF(fn);
        return fn != NULL;
    }
    return in_list(cell ? cell_magics : line_magics, name);
}

/* 1 when IPython is up or can be imported here: found by importlib without
 * importing it (a module set to None in sys.modules, as a test does, counts
 * as missing). Never raises. */
static int ipython_findable(void)
{
    if (the_shell != NULL)
        return 1;
    PyObject *util = PyImport_ImportModule("importlib.util");
    PyObject *spec = util ? PyObject_CallMethod(util, "find_spec", "s", "IPython") : NULL;
    Py_XDECREF(util);
    if (spec == NULL)
        PyErr_Clear();
    int have = spec != NULL && spec != Py_None;
    Py_XDECREF(spec);
    return have;
}

int ipybridge_automagic(const char *name)
{
    if (!ipybridge_has_magic(name, 0))
        return 0;
    return ipython_findable();
}

/* ---- what the shell's parts publish through --------------------------------- */

/* DisplayPublisher.publish(data, metadata=None, source=None, *,
 * transient=None, update=False, **kwargs): display_data (or
 * update_display_data) through the kernel. */
static PyObject *br_publish(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"data", "metadata", "source", "transient", "update", NULL};
    PyObject *data, *metadata = Py_None, *source = Py_None, *transient = Py_None, *known = NULL;
    int update = 0;
    known = PyDict_New();
    if (known == NULL)
        return NULL;
    for (char **k = kwlist; kw && *k; k++) { /* the rest (IPython adds keywords) is ignored */
        PyObject *v = PyDict_GetItemString(kw, *k);
        if (v && PyDict_SetItemString(known, *k, v) < 0) {
            Py_DECREF(known);
            return NULL;
        }
    }
    int ok = PyArg_ParseTupleAndKeywords(args, known, "O|OOOp:publish", kwlist, &data, &metadata,
                                         &source, &transient, &update);
    Py_DECREF(known);
    if (!ok)
        return NULL;
    PyObject *did = Py_None;
    if (transient != Py_None && PyDict_Check(transient) &&
        PyDict_GetItemString(transient, "display_id"))
        did = PyDict_GetItemString(transient, "display_id");
    if (interp_display(data, 1, metadata, did, update && did != Py_None) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *br_clear_output(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"wait", NULL};
    int wait = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:clear_output", kwlist, &wait))
        return NULL;
    interp_clear_output(wait);
    Py_RETURN_NONE;
}

/* InteractiveShell._showtraceback(etype, evalue, stb): an `error` message
 * with IPython's formatted traceback, as ipykernel sends it. */
static PyObject *br_showtraceback(PyObject *self, PyObject *args)
{
    PyObject *etype, *evalue, *stb;
    if (!PyArg_ParseTuple(args, "OOO:_showtraceback", &etype, &evalue, &stb))
        return NULL;
    PyObject *name = PyObject_GetAttrString(etype, "__name__");
    PyObject *value = name ? PyObject_Str(evalue) : NULL;
    PyObject *content =
        value ? Py_BuildValue("{s:O, s:O, s:O}", "ename", name, "evalue", value, "traceback", stb)
              : NULL;
    json_t *j = content ? interp_to_json(content) : NULL;
    Py_XDECREF(name);
    Py_XDECREF(value);
    Py_XDECREF(content);
    if (j == NULL)
        return NULL;
    interp_publish("error", j);
    Py_RETURN_NONE;
}

/* set_next_input(text, replace=False): a set_next_input payload, as
 * ipykernel's shell sends. */
static PyObject *br_set_next_input(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"text", "replace", NULL};
    const char *text;
    int replace = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|p:set_next_input", kwlist, &text, &replace))
        return NULL;
    session_add_payload(
        json_pack("{s:s, s:s, s:b}", "source", "set_next_input", "text", text, "replace", replace));
    Py_RETURN_NONE;
}

static PyMethodDef br_publish_def = {
    "publish", (PyCFunction)(void (*)(void))br_publish, METH_VARARGS | METH_KEYWORDS,
    "publish(data, metadata=None, source=None, *, transient=None, update=False)\n--\n\n"
    "Publish a MIME bundle through the pyrometer kernel."};
static PyMethodDef br_clear_def = {"clear_output", (PyCFunction)(void (*)(void))br_clear_output,
                                   METH_VARARGS | METH_KEYWORDS,
                                   "clear_output(wait=False)\n--\n\nClear the cell's output."};
static PyMethodDef br_showtb_def = {"_showtraceback", br_showtraceback, METH_VARARGS,
                                    "Publish a formatted traceback as an error message."};
static PyMethodDef br_next_input_def = {
    "set_next_input", (PyCFunction)(void (*)(void))br_set_next_input, METH_VARARGS | METH_KEYWORDS,
    "set_next_input(text, replace=False)\n--\n\nPut text in the next input cell (a payload)."};

/* ---- making the shell ------------------------------------------------------- */

/* type(name, (base,), {member: staticmethod(fn), ...}) for the PyMethodDefs
 * defs (NULL-ended), plus extra (a dict, may be NULL) merged in. Returns a
 * new class, or NULL with an exception set. */
static PyObject *subclass(const char *name, PyObject *base, PyMethodDef **defs, PyObject *extra)
{
    PyObject *ns = PyDict_New(), *cls = NULL;
    if (ns == NULL)
        return NULL;
    PyObject *module = PyUnicode_FromString("_pyrometer_kernel");
    int bad = module == NULL || PyDict_SetItemString(ns, "__module__", module) < 0;
    Py_XDECREF(module);
    if (bad)
        goto error;
    for (; defs && *defs; defs++) {
        PyObject *fn = PyCFunction_New(*defs, NULL);
        PyObject *sm = fn ? PyStaticMethod_New(fn) : NULL;
        int rc = sm ? PyDict_SetItemString(ns, (*defs)->ml_name, sm) : -1;
        Py_XDECREF(fn);
        Py_XDECREF(sm);
        if (rc < 0)
            goto error;
    }
    if (extra && PyDict_Update(ns, extra) < 0)
        goto error;
    cls = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O)O", name, base, ns);
error:
    Py_DECREF(ns);
    return cls;
}

/* obj[key] = value through obj's own __setitem__. Returns 0 or -1. */
static int set_item(PyObject *obj, const char *key, PyObject *value)
{
    PyObject *k = PyUnicode_FromString(key);
    int rc = k ? PyObject_SetItem(obj, k, value) : -1;
    Py_XDECREF(k);
    return rc;
}

/* getattr(import(module), attr) as a new reference, or NULL. */
static PyObject *import_attr(const char *module, const char *attr)
{
    PyObject *m = PyImport_ImportModule(module);
    PyObject *a = m ? PyObject_GetAttrString(m, attr) : NULL;
    Py_XDECREF(m);
    return a;
}

/* The names of user_ns and builtins that IPython's start-up rebinds; the
 * kernel's values are put back (or the names removed) afterwards. */
static const char *const kept_names[] = {"In",   "Out", "_ih", "_oh", "get_ipython", "exit",
                                         "quit", "_",   "__",  "___", NULL};

/* Copies ns[name] for each name into saved (absent: not copied). */
static int save_names(PyObject *ns, const char *const *names, PyObject *saved)
{
    for (; *names; names++) {
        PyObject *v = PyDict_GetItemString(ns, *names);
        if (v && PyDict_SetItemString(saved, *names, v) < 0)
            return -1;
    }
    return 0;
}

static int restore_names(PyObject *ns, const char *const *names, PyObject *saved)
{
    for (; *names; names++) {
        PyObject *v = PyDict_GetItemString(saved, *names);
        if (v) {
            if (PyDict_SetItemString(ns, *names, v) < 0)
                return -1;
        } else if (PyDict_GetItemString(ns, *names) && PyDict_DelItemString(ns, *names) < 0) {
            return -1;
        }
    }
    return 0;
}

/* IPython's shell's own event callbacks move to the kernel's events object,
 * which then replaces the shell's. */
static int share_events(PyObject *shell)
{
    PyObject *theirs = PyObject_GetAttrString(shell, "events");
    PyObject *cbs = theirs ? PyObject_GetAttrString(theirs, "callbacks") : NULL;
    PyObject *ours = events_object();
    int rc = -1;
    if (cbs == NULL || ours == NULL || !PyDict_Check(cbs))
        goto done;
    PyObject *event, *list;
    Py_ssize_t pos = 0;
    while (PyDict_Next(cbs, &pos, &event, &list)) {
        PyObject *it = PyObject_GetIter(list), *fn;
        if (it == NULL)
            goto done;
        while ((fn = PyIter_Next(it)) != NULL) {
            PyObject *r = PyObject_CallMethod(ours, "register", "OO", event, fn);
            Py_DECREF(fn);
            if (r == NULL) /* an event the kernel does not fire */
                PyErr_Clear();
            Py_XDECREF(r);
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto done;
    }
    rc = PyObject_SetAttrString(shell, "events", ours);
done:
    Py_XDECREF(theirs);
    Py_XDECREF(cbs);
    return rc;
}

/* Earlier sessions (%history -l and -g, ranges such as ~1/1-5) come from
 * the kernel's own database, which has IPython's shape: the history
 * manager gets a read-only connection to it and the kernel's session
 * number. It stays disabled, so it never writes. Where the kernel keeps its
 * history in memory or the file cannot be opened, IPython's DummyDB stays
 * and those options find nothing. Never raises. */
static void share_history_db(PyObject *hm)
{
    long long session;
    const char *file = history_file(&session);
    if (file == NULL)
        return;
    PyObject *os_path = PyImport_ImportModule("os.path");
    PyObject *abs = os_path ? PyObject_CallMethod(os_path, "abspath", "s", file) : NULL;
    PyObject *pathlib = abs ? PyImport_ImportModule("pathlib") : NULL;
    PyObject *path = pathlib ? PyObject_CallMethod(pathlib, "Path", "(O)", abs) : NULL;
    PyObject *uri = path ? PyObject_CallMethod(path, "as_uri", NULL) : NULL;
    PyObject *ro = uri ? PyUnicode_FromFormat("%U?mode=ro", uri) : NULL;
    PyObject *sqlite3 = ro ? PyImport_ImportModule("sqlite3") : NULL;
    PyObject *connect = sqlite3 ? PyObject_GetAttrString(sqlite3, "connect") : NULL;
    PyObject *args = connect ? PyTuple_Pack(1, ro) : NULL;
    PyObject *kw =
        args ? Py_BuildValue("{s:O, s:O}", "uri", Py_True, "check_same_thread", Py_False) : NULL;
    PyObject *conn = kw ? PyObject_Call(connect, args, kw) : NULL;
    PyObject *num = conn ? PyLong_FromLongLong(session) : NULL;
    if (num == NULL || PyObject_SetAttrString(hm, "session_number", num) < 0 ||
        PyObject_SetAttrString(hm, "db", conn) < 0)
        PyErr_Clear();
    Py_XDECREF(os_path);
    Py_XDECREF(abs);
    Py_XDECREF(pathlib);
    Py_XDECREF(path);
    Py_XDECREF(uri);
    Py_XDECREF(ro);
    Py_XDECREF(sqlite3);
    Py_XDECREF(connect);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(conn);
    Py_XDECREF(num);
}

/* IPython's history manager reads the kernel's In and Out, so %history,
 * %rerun, %save, %macro and %recall see this session's cells, and the
 * kernel's database for earlier ones (share_history_db). Its own SQLite
 * file stays off (HistoryManager.enabled = False at start-up). */
static int share_history(PyObject *shell, PyObject *saved)
{
    PyObject *hm = PyObject_GetAttrString(shell, "history_manager");
    PyObject *in = PyDict_GetItemString(saved, "In"), *out = PyDict_GetItemString(saved, "Out");
    int rc = -1;
    if (hm == NULL)
        return -1;
    if ((in && (PyObject_SetAttrString(hm, "input_hist_parsed", in) < 0 ||
                PyObject_SetAttrString(hm, "input_hist_raw", in) < 0)) ||
        (out && PyObject_SetAttrString(hm, "output_hist", out) < 0))
        goto done;
    share_history_db(hm);
    rc = 0;
done:
    Py_DECREF(hm);
    return rc;
}

/* Loads an extension as IPython's applications do at start (storemagic
 * gives %store); a failure is only logged on stderr. */
static void load_default_extension(PyObject *shell, const char *name)
{
    PyObject *em = PyObject_GetAttrString(shell, "extension_manager");
    PyObject *r = em ? PyObject_CallMethod(em, "load_extension", "s", name) : NULL;
    if (r == NULL) {
        PyErr_Clear();
        PySys_WriteStderr("pyrometer: cannot load IPython extension %s\n", name);
    }
    Py_XDECREF(r);
    Py_XDECREF(em);
}

/* IPython's %%bash, %%sh and %%script read the script's output on an
 * event loop in a thread of their own, made by the first of them. The
 * bridge makes it first, with no cell of its own, so each cell's script
 * output goes to that cell. A failure leaves ScriptMagics to make its own. */
static void script_loop(PyObject *shell)
{
    PyObject *mm = NULL, *reg = NULL, *sm = NULL, *asyncio = NULL, *loop = NULL;
    PyObject *threading = NULL, *thread = NULL, *start = NULL, *r = NULL;
    mm = PyObject_GetAttrString(shell, "magics_manager");
    reg = mm ? PyObject_GetAttrString(mm, "registry") : NULL;
    sm = reg ? PyMapping_GetItemString(reg, "ScriptMagics") : NULL;
    asyncio = sm ? PyImport_ImportModule("asyncio") : NULL;
    loop = asyncio ? PyObject_CallMethod(asyncio, "new_event_loop", NULL) : NULL;
    threading = loop ? PyImport_ImportModule("threading") : NULL;
    PyObject *run = threading ? PyObject_GetAttrString(loop, "run_forever") : NULL;
    PyObject *kw = run ? Py_BuildValue("{s:O, s:O, s:s}", "target", run, "daemon", Py_True, "name",
                                       "IPython script magics")
                       : NULL;
    PyObject *empty = kw ? PyTuple_New(0) : NULL;
    PyObject *cls = empty ? PyObject_GetAttrString(threading, "Thread") : NULL;
    thread = cls ? PyObject_Call(cls, empty, kw) : NULL;
    Py_XDECREF(run);
    Py_XDECREF(kw);
    Py_XDECREF(empty);
    Py_XDECREF(cls);
    start = thread ? PyObject_GetAttrString(thread, "start") : NULL;
    r = start ? streams_call_unparented(start) : NULL;
    if (r == NULL || PyObject_SetAttrString(sm, "event_loop", loop) < 0)
        PyErr_Clear();
    Py_XDECREF(mm);
    Py_XDECREF(reg);
    Py_XDECREF(sm);
    Py_XDECREF(asyncio);
    Py_XDECREF(loop);
    Py_XDECREF(threading);
    Py_XDECREF(thread);
    Py_XDECREF(start);
    Py_XDECREF(r);
}

static PyObject *make_shell(void)
{
    PyObject *ishell = NULL, *dh = NULL, *dp = NULL, *config_cls = NULL, *kmod = NULL;
    PyObject *hook_cls = NULL, *pub_cls = NULL, *shell_cls = NULL, *cfg = NULL, *hm = NULL;
    PyObject *saved = NULL, *saved_b = NULL, *main_mod = NULL, *kw = NULL, *empty = NULL;
    PyObject *shell = NULL, *extra = NULL, *builtins = NULL, *pyro = NULL, *r = NULL;
    PyObject *user_ns = interp_user_ns();

    ishell = import_attr("IPython.core.interactiveshell", "InteractiveShell");
    dh = ishell ? import_attr("IPython.core.displayhook", "DisplayHook") : NULL;
    dp = dh ? import_attr("IPython.core.displaypub", "DisplayPublisher") : NULL;
    config_cls = dp ? import_attr("traitlets.config", "Config") : NULL;
    kmod = config_cls ? PyImport_ImportModule("_pyrometer_kernel") : NULL;
    if (kmod == NULL)
        goto error;

    /* DisplayHook whose call is the kernel's sys.displayhook. */
    PyObject *khook = PyObject_GetAttrString(kmod, "displayhook");
    PyObject *sm = khook ? PyStaticMethod_New(khook) : NULL;
    Py_XDECREF(khook);
    extra = sm ? Py_BuildValue("{s:O}", "__call__", sm) : NULL;
    Py_XDECREF(sm);
    if (extra == NULL)
        goto error;
    hook_cls = subclass("KernelDisplayHook", dh, NULL, extra);
    PyMethodDef *pub_defs[] = {&br_publish_def, &br_clear_def, NULL};
    pub_cls = hook_cls ? subclass("KernelDisplayPublisher", dp, pub_defs, NULL) : NULL;
    PyMethodDef *shell_defs[] = {&br_showtb_def, &br_next_input_def, NULL};
    /* Named as ipykernel's shell: code tells a notebook from a terminal by
     * that name (rich, transformers, and others). */
    shell_cls = pub_cls ? subclass("ZMQInteractiveShell", ishell, shell_defs, NULL) : NULL;
    if (shell_cls == NULL)
        goto error;

    cfg = PyObject_CallNoArgs(config_cls);
    hm = cfg ? PyObject_CallNoArgs(config_cls) : NULL;
    if (hm == NULL || set_item(hm, "enabled", Py_False) < 0 ||
        set_item(cfg, "HistoryManager", hm) < 0)
        goto error;
    /* An IPKernelApp section, as a kernel's shell has: code checks for it
     * to know it runs in a kernel (tqdm.auto, transformers). */
    PyObject *app = PyObject_CallNoArgs(config_cls);
    int bad_app = app == NULL || set_item(cfg, "IPKernelApp", app) < 0;
    Py_XDECREF(app);
    if (bad_app)
        goto error;

    builtins = PyImport_ImportModule("builtins");
    saved = PyDict_New();
    saved_b = PyDict_New();
    main_mod = PyImport_AddModule("__main__"); /* borrowed */
    if (builtins == NULL || saved == NULL || saved_b == NULL || main_mod == NULL)
        goto error;
    static const char *const builtin_names[] = {"display", "get_ipython", "exit", "quit", NULL};
    PyObject *bdict = PyModule_GetDict(builtins); /* borrowed */
    if (save_names(user_ns, kept_names, saved) < 0 || save_names(bdict, builtin_names, saved_b) < 0)
        goto error;

    kw = Py_BuildValue("{s:O, s:O, s:O, s:O}", "user_module", main_mod, "config", cfg,
                       "displayhook_class", hook_cls, "display_pub_class", pub_cls);
    empty = kw ? PyTuple_New(0) : NULL;
    PyObject *instance = empty ? PyObject_GetAttrString(shell_cls, "instance") : NULL;
    shell = instance ? PyObject_Call(instance, empty, kw) : NULL;
    Py_XDECREF(instance);
    if (shell == NULL)
        goto error;
    /* Code that asks IPython's shell for the kernel (IPython.get_ipython()
     * .kernel, as under ipykernel) finds the same object as get_ipython(). */
    PyObject *ours = PyDict_GetItemString(saved_b, "get_ipython");
    PyObject *ksh = ours ? PyObject_CallNoArgs(ours) : NULL;
    PyObject *kernel = ksh ? PyObject_GetAttrString(ksh, "kernel") : NULL;
    int bad_kernel = kernel == NULL || PyObject_SetAttrString(shell, "kernel", kernel) < 0;
    Py_XDECREF(ksh);
    Py_XDECREF(kernel);
    if (bad_kernel)
        goto error;
    if (restore_names(user_ns, kept_names, saved) < 0 ||
        restore_names(bdict, builtin_names, saved_b) < 0 || share_history(shell, saved) < 0 ||
        share_events(shell) < 0)
        goto error;
    /* From now on the patched IPython.display functions hand over to
     * IPython's own, whose display_pub is the kernel's, and the builtin
     * display() is IPython's, as under ipykernel (%%capture swaps its
     * publisher). */
    if (stdmagics_hooks_ipython_ready(shell) < 0)
        goto error;
    PyObject *ipy_display = import_attr("IPython.core.display_functions", "display");
    int bad = ipy_display == NULL || PyDict_SetItemString(bdict, "display", ipy_display) < 0;
    Py_XDECREF(ipy_display);
    if (bad)
        goto error;
    load_default_extension(shell, "storemagic");
    script_loop(shell);
    /* pyrometer's magics in IPython's table too, for code that asks IPython
     * for them (IPython.get_ipython().run_line_magic("lprun", ...)). */
    pyro = PyImport_ImportModule("pyrometer");
    r = pyro ? PyObject_CallMethod(pyro, "load_ipython_extension", "(O)", shell) : NULL;
    if (r == NULL)
        goto error;
    Py_DECREF(r);
    goto done;
error:
    Py_CLEAR(shell);
done:
    Py_XDECREF(ishell);
    Py_XDECREF(dh);
    Py_XDECREF(dp);
    Py_XDECREF(config_cls);
    Py_XDECREF(kmod);
    Py_XDECREF(hook_cls);
    Py_XDECREF(pub_cls);
    Py_XDECREF(shell_cls);
    Py_XDECREF(cfg);
    Py_XDECREF(hm);
    Py_XDECREF(saved);
    Py_XDECREF(saved_b);
    Py_XDECREF(kw);
    Py_XDECREF(empty);
    Py_XDECREF(extra);
    Py_XDECREF(builtins);
    Py_XDECREF(pyro);
    return shell;
}

PyObject *ipybridge_shell(void)
{
    if (the_shell == NULL && !making) {
        making = 1;
        the_shell = make_shell();
        making = 0;
    } else if (the_shell == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "IPython's shell is still being made");
    }
    return the_shell;
}

/* InteractiveShell.instance(*args, **kw), as patched: code that asks
 * IPython for its shell (matplotlib_inline's set_matplotlib_formats, an
 * extension) gets the kernel's, brought up now, instead of a second,
 * unbound one that would keep the kernel's from ever coming up. */
static PyObject *kernel_instance(PyObject *unused, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "instance() needs its class");
        return NULL;
    }
    if (!making && ipybridge_shell() == NULL)
        return NULL;
    PyObject *cls = PyTuple_GET_ITEM(args, 0);
    PyObject *bound = PyObject_CallMethod(orig_instance, "__get__", "OO", Py_None, cls);
    PyObject *rest = bound ? PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args)) : NULL;
    PyObject *r = rest ? PyObject_Call(bound, rest, kw) : NULL;
    Py_XDECREF(bound);
    Py_XDECREF(rest);
    return r;
}

static PyMethodDef kernel_instance_def = {"instance", (PyCFunction)(void (*)(void))kernel_instance,
                                          METH_VARARGS | METH_KEYWORDS,
                                          "The kernel's IPython shell (brought up if it is not)."};

int ipybridge_patch_interactiveshell(PyObject *mod)
{
    PyObject *cls = PyObject_GetAttrString(mod, "InteractiveShell");
    PyObject *mro = cls ? PyObject_GetAttrString(cls, "__mro__") : NULL;
    if (mro == NULL || !PyTuple_Check(mro)) {
        Py_XDECREF(cls);
        Py_XDECREF(mro);
        return cls && mro ? (PyErr_SetString(PyExc_TypeError, "no __mro__"), -1) : -1;
    }
    PyObject *cm = NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro) && cm == NULL; i++) {
        PyObject *d = PyObject_GetAttrString(PyTuple_GET_ITEM(mro, i), "__dict__");
        cm = d ? PyMapping_GetItemString(d, "instance") : NULL;
        Py_XDECREF(d);
        PyErr_Clear();
    }
    Py_DECREF(mro);
    int rc = -1;
    if (cm == NULL) {
        PyErr_SetString(PyExc_AttributeError, "InteractiveShell has no instance()");
    } else {
        Py_XSETREF(orig_instance, cm);
        PyObject *f = PyCFunction_New(&kernel_instance_def, NULL);
        PyObject *ours = f ? PyClassMethod_New(f) : NULL;
        Py_XDECREF(f);
        rc = ours ? PyObject_SetAttrString(cls, "instance", ours) : -1;
        Py_XDECREF(ours);
    }
    Py_DECREF(cls);
    return rc;
}

/* IPython.get_ipython(), as patched: the kernel's shell, as under
 * ipykernel: IPython's once it is up, else the kernel's own get_ipython()
 * object (whose IPython-only attributes bring IPython's up). */
static PyObject *kernel_get_ipython(PyObject *unused, PyObject *noargs)
{
    if (the_shell)
        return Py_NewRef(the_shell);
    if (making)
        return PyObject_CallNoArgs(orig_get_ipython);
    if (shell_object() == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(shell_object());
}

static PyMethodDef kernel_get_ipython_def = {
    "get_ipython", kernel_get_ipython, METH_NOARGS,
    "get_ipython()\n--\n\nThe kernel's shell: IPython's once it is up, else the kernel's own."};

int ipybridge_patch_getipython(PyObject *mod)
{
    PyObject *orig = PyObject_GetAttrString(mod, "get_ipython");
    if (orig == NULL)
        return -1;
    Py_XSETREF(orig_get_ipython, orig);
    PyObject *f = PyCFunction_New(&kernel_get_ipython_def, NULL);
    int rc = f ? PyObject_SetAttrString(mod, "get_ipython", f) : -1;
    Py_XDECREF(f);
    return rc;
}

PyObject *ipybridge_format(PyObject *obj, PyObject **metadata)
{
    if (stdmagics_hooks_figure_formats(the_shell, obj) < 0)
        return NULL;
    PyObject *fmt = PyObject_GetAttrString(the_shell, "display_formatter");
    PyObject *r = fmt ? PyObject_CallMethod(fmt, "format", "(O)", obj) : NULL;
    Py_XDECREF(fmt);
    if (r == NULL)
        return NULL;
    PyObject *data = NULL, *md = NULL;
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2 || !PyDict_Check(PyTuple_GET_ITEM(r, 0))) {
        PyErr_SetString(PyExc_TypeError,
                        "IPython's display_formatter.format gave no (data, metadata)");
        goto done;
    }
    data = PyDict_Copy(PyTuple_GET_ITEM(r, 0));
    PyObject *m = PyTuple_GET_ITEM(r, 1);
    md = data == NULL ? NULL : PyDict_Check(m) ? PyDict_Copy(m) : PyDict_New();
    if (md == NULL)
        Py_CLEAR(data);
done:
    Py_DECREF(r);
    *metadata = md;
    return data;
}

/* When IPython is not installed, what the user reads: a UsageError saying
 * so (the ImportError stays its __cause__). Leaves other errors alone. */
static void explain_missing(const char *what)
{
    if (!PyErr_ExceptionMatches(PyExc_ImportError))
        return;
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    PyObject *mod = PyImport_ImportModule("pyrometer");
    PyObject *ue = mod ? PyObject_GetAttrString(mod, "UsageError") : NULL;
    Py_XDECREF(mod);
    if (ue == NULL) {
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        return;
    }
    PyErr_Format(ue,
                 "%s comes from IPython, which Python %d.%d cannot import here: install IPython "
                 "(python3-ipython, or pip install ipython) to use it",
                 what, PY_MAJOR_VERSION, PY_MINOR_VERSION);
    Py_DECREF(ue);
    PyObject *t2, *v2, *tb2;
    PyErr_Fetch(&t2, &v2, &tb2);
    PyErr_NormalizeException(&t2, &v2, &tb2);
    if (v2 != NULL && v != NULL)
        PyException_SetCause(v2, Py_NewRef(v));
    PyErr_Restore(t2, v2, tb2);
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
}

/* Keeps IPython's prompt counter with the kernel's. */
static void sync_count(void)
{
    PyObject *n = PyLong_FromLong(interp_execution_count());
    if (n == NULL || PyObject_SetAttrString(the_shell, "execution_count", n) < 0)
        PyErr_Clear();
    Py_XDECREF(n);
}

PyObject *ipybridge_run_magic(const char *name, PyObject *line, PyObject *cell)
{
    if (ipybridge_shell() == NULL) {
        char what[64];
        snprintf(what, sizeof what, "%s%.40s", cell ? "%%" : "%", name);
        explain_missing(what);
        return NULL;
    }
    sync_count();
    /* The magics that read the database find this cell's input there, as
     * IPython's own history manager writes it out before it reads. */
    static const char *const readers[] = {"history", "hist", "rerun", "recall", "rep",      "save",
                                          "macro",   "load", "edit",  "ed",     "pastebin", NULL};
    if (cell == NULL && in_list(readers, name))
        history_sync();
    if (cell != NULL)
        return PyObject_CallMethod(the_shell, "run_cell_magic", "sOO", name, line, cell);
    return PyObject_CallMethod(the_shell, "run_line_magic", "sO", name, line);
}

PyObject *ipybridge_magic_doc(const char *name, int cell)
{
    if (!ipybridge_has_magic(name, cell))
        return NULL;
    if (ipybridge_shell() == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *fn = find_magic(name, cell);
    if (fn == NULL)
        return NULL;
    PyObject *inspect = PyImport_ImportModule("inspect");
    PyObject *doc = inspect ? PyObject_CallMethod(inspect, "getdoc", "(O)", fn) : NULL;
    Py_XDECREF(inspect);
    Py_DECREF(fn);
    if (doc == NULL || !PyUnicode_Check(doc)) {
        PyErr_Clear();
        Py_XDECREF(doc);
        return NULL;
    }
    return doc;
}

/* "%a %b ..." for the names of list, wrapped at 76 columns with indent. */
static int append_names(PyObject **text, const char *const *list, const char *sigil)
{
    size_t col = 0;
    for (; *list; list++) {
        size_t w = strlen(sigil) + strlen(*list);
        const char *sep = " ";
        if (col == 0 || col + 1 + w > 76) {
            sep = col == 0 ? "  " : "\n  ";
            col = 2 + w;
        } else {
            col += 1 + w;
        }
        PyUnicode_AppendAndDel(text, PyUnicode_FromFormat("%s%s%s", sep, sigil, *list));
        if (*text == NULL)
            return -1;
    }
    PyUnicode_AppendAndDel(text, PyUnicode_FromString("\n"));
    return *text ? 0 : -1;
}

PyObject *ipybridge_magics_text(void)
{
    if (!ipython_findable())
        return PyUnicode_FromString("");
    PyObject *text = PyUnicode_FromString(
        the_shell ? "\nIPython's line magics (IPython is loaded):\n"
                  : "\nIPython's line magics (IPython is loaded on first use):\n");
    if (text == NULL || append_names(&text, line_magics, "%") < 0)
        return NULL;
    PyUnicode_AppendAndDel(&text, PyUnicode_FromString("\nIPython's cell magics:\n"));
    if (text == NULL || append_names(&text, cell_magics, "%%") < 0)
        return NULL;
    return text;
}

void ipybridge_cell_failed(int interactive)
{
    if (the_shell == NULL)
        return;
    PyObject *itb = PyObject_GetAttrString(the_shell, "InteractiveTB");
    if (itb == NULL || PyObject_SetAttrString(itb, "tb", Py_None) < 0)
        PyErr_Clear();
    Py_XDECREF(itb);
    PyObject *on = interactive ? PyObject_GetAttrString(the_shell, "call_pdb") : NULL;
    int want = on != NULL && PyObject_IsTrue(on) > 0;
    Py_XDECREF(on);
    PyObject *r = want ? PyObject_CallMethod(the_shell, "debugger", "(O)", Py_True) : NULL;
    Py_XDECREF(r);
    PyErr_Clear();
}

void ipybridge_clear(void)
{
    Py_CLEAR(the_shell);
    Py_CLEAR(orig_instance);
    Py_CLEAR(orig_get_ipython);
}
