/* stdmagics_hooks.c - rich display with no set-up line, at no start-up cost.
 *
 * Neither IPython nor matplotlib is imported when the kernel starts. An
 * import hook (first on sys.meta_path) lets every import through untouched
 * except these, which it finishes by patching the freshly executed module:
 *   IPython.core.display_functions: display, clear_output and
 *     publish_display_data publish through the kernel (IPython's own check
 *     InteractiveShell.initialized() would otherwise make display() print);
 *     IPython.display re-exports them, and DisplayHandle.update() finds the
 *     patched display() as a module global.
 *   matplotlib: the backend becomes the kernel's inline backend
 *     (module://_pyrometer_kernel_mpl) unless MPLBACKEND is set, as
 *     ipykernel does; %matplotlib inline forces it.
 *   matplotlib.figure: Figure._repr_png_, so display(fig) shows the image.
 *   _pyrometer_kernel_mpl: the backend module itself, built in C: Agg's
 *     canvas, the base manager, and a show() that publishes the figures.
 *   linecache, getpass, threading: the kernel's own connections (cell
 *     sources, getpass() through the frontend, a thread's output parent),
 *     made when the user's code imports them, so that an idle kernel has
 *     not paid for them (with re, enum and tokenize, about 1 MiB).
 * We do not set MPLBACKEND in the environment: child processes (!python
 * script.py, multiprocessing) could not import our backend module.
 * After each cell, open figures are published as image/png and closed.
 */
#include "stdmagics_hooks.h"

#include <structmember.h>

#include <stdlib.h>
#include <string.h>

#include "comms.h"
#include "interp.h"
#include "ipybridge.h"
#include "streams.h"
#include "wire.h"

/* Hook state. Protected by the GIL. */
static struct {
    PyObject *hook;        /* owned: the ImportHook on sys.meta_path */
    PyObject *loader_type; /* owned: PatchingLoader */
    PyObject *handle_type; /* owned: DisplayHandle */
    int force_inline;      /* %matplotlib inline was run: ignore MPLBACKEND */
    int ipython_ready;     /* IPython's shell is up: its own display() publishes */
} hk;

#define BACKEND_MODULE "_pyrometer_kernel_mpl"

/* Reports the raised exception on sys.stderr as one line and clears it. */
static void report(const char *what)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    PyObject *s = v ? PyObject_Repr(v) : NULL;
    PyErr_Clear();
    PyObject *err = PySys_GetObject("stderr");
    if (err && err != Py_None) {
        PyObject *line = PyUnicode_FromFormat("pyrometer: %s: %S\n", what, s ? s : Py_None);
        if (line)
            PyFile_WriteObject(line, err, Py_PRINT_RAW);
        Py_XDECREF(line);
    }
    PyErr_Clear();
    Py_XDECREF(s);
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
}

/* sys.modules[name], borrowed, or NULL (no exception). */
static PyObject *loaded(const char *name)
{
    PyObject *m = PyDict_GetItemString(PyImport_GetModuleDict(), name);
    return m == Py_None ? NULL : m;
}

/* ---- matplotlib ------------------------------------------------------------- */

/* 1 when matplotlib's configured backend is ours. */
static int backend_is_ours(void)
{
    PyObject *mpl = loaded("matplotlib");
    PyObject *rc = mpl ? PyObject_GetAttrString(mpl, "rcParams") : NULL;
    int ours = 0;
    if (rc && PyDict_Check(rc)) { /* RcParams is a dict: read without resolving */
        PyObject *b = PyDict_GetItemString(rc, "backend");
        if (b && PyUnicode_Check(b)) {
            PyObject *low = PyObject_CallMethod(b, "lower", NULL);
            const char *l = low ? PyUnicode_AsUTF8(low) : NULL;
            ours = l && strcmp(l, STDMAGICS_MPL_BACKEND) == 0;
            Py_XDECREF(low);
        }
    }
    Py_XDECREF(rc);
    PyErr_Clear();
    return ours;
}

/* Returns fig rendered as PNG bytes (tight bounding box, as the inline
 * backend of IPython does), or NULL with an exception set. */
static PyObject *figure_png_bytes(PyObject *fig)
{
    PyObject *io = PyImport_ImportModule("io"), *buf = NULL, *r = NULL, *kw = NULL;
    PyObject *savefig = NULL, *args = NULL, *png = NULL;
    buf = io ? PyObject_CallMethod(io, "BytesIO", NULL) : NULL;
    savefig = buf ? PyObject_GetAttrString(fig, "savefig") : NULL;
    args = savefig ? PyTuple_Pack(1, buf) : NULL;
    kw = args ? Py_BuildValue("{s:s, s:s}", "format", "png", "bbox_inches", "tight") : NULL;
    r = kw ? PyObject_Call(savefig, args, kw) : NULL;
    png = r ? PyObject_CallMethod(buf, "getvalue", NULL) : NULL;
    Py_XDECREF(io);
    Py_XDECREF(buf);
    Py_XDECREF(savefig);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(r);
    return png;
}

/* Figure._repr_png_(self). Once IPython's shell is up, the figure formats
 * are IPython's (stdmagics_hooks_figure_formats): None here, so that only
 * the formats it registered show. */
static PyObject *figure_repr_png(PyObject *unused, PyObject *fig)
{
    if (hk.ipython_ready)
        Py_RETURN_NONE;
    return figure_png_bytes(fig);
}

/* The figure formats that InlineBackend's configuration asks for
 * (`%config InlineBackend.figure_format = 'retina'`, figure_formats,
 * print_figure_kwargs): a new (formats, kwargs) tuple; ({'png'},
 * {'bbox_inches': 'tight'}) by default, as matplotlib-inline's. */
static PyObject *configured_formats(PyObject *shell)
{
    PyObject *cfg = PyObject_GetAttrString(shell, "config");
    PyObject *ib = cfg ? PyObject_CallMethod(cfg, "get", "s", "InlineBackend") : NULL;
    Py_XDECREF(cfg);
    if (ib == NULL)
        return NULL;
    PyObject *formats = NULL, *kwargs = NULL;
    if (ib != Py_None) {
        formats = PyObject_CallMethod(ib, "get", "s", "figure_formats");
        if (formats == Py_None) {
            Py_DECREF(formats);
            formats = PyObject_CallMethod(ib, "get", "s", "figure_format");
        }
        kwargs = formats ? PyObject_CallMethod(ib, "get", "s", "print_figure_kwargs") : NULL;
    }
    Py_DECREF(ib);
    if (ib != Py_None && kwargs == NULL) {
        Py_XDECREF(formats);
        return NULL;
    }
    if (formats == NULL || formats == Py_None)
        Py_XSETREF(formats, PyUnicode_FromString("png"));
    if (formats && PyUnicode_Check(formats))
        Py_SETREF(formats, Py_BuildValue("(O)", formats));
    if (formats) /* one set, whatever the config held, so that it compares */
        Py_SETREF(formats, PyFrozenSet_New(formats));
    if (kwargs == NULL || kwargs == Py_None)
        Py_XSETREF(kwargs, Py_BuildValue("{s:s}", "bbox_inches", "tight"));
    PyObject *r = formats && kwargs ? PyTuple_Pack(2, formats, kwargs) : NULL;
    Py_XDECREF(formats);
    Py_XDECREF(kwargs);
    return r;
}

/* Hands the configured figure formats to IPython's select_figure_formats
 * when force is set or the configuration changed since the last look (so
 * a later set_matplotlib_formats() call stands until the configuration
 * changes again). Returns 0, or -1 with an exception set. */
static int sync_figure_formats(PyObject *shell, int force)
{
    static PyObject *seen; /* the (formats, kwargs) configured at the last look */
    if (loaded("matplotlib.figure") == NULL)
        return 0;
    PyObject *want = configured_formats(shell);
    if (want == NULL)
        return -1;
    int same = !force && seen ? PyObject_RichCompareBool(seen, want, Py_EQ) : 0;
    if (same != 0) {
        Py_DECREF(want);
        return same < 0 ? -1 : 0;
    }
    PyObject *pylab = PyImport_ImportModule("IPython.core.pylabtools");
    PyObject *select = pylab ? PyObject_GetAttrString(pylab, "select_figure_formats") : NULL;
    PyObject *args = select ? PyTuple_Pack(2, shell, PyTuple_GET_ITEM(want, 0)) : NULL;
    PyObject *r = args ? PyObject_Call(select, args, PyTuple_GET_ITEM(want, 1)) : NULL;
    Py_XDECREF(pylab);
    Py_XDECREF(select);
    Py_XDECREF(args);
    if (r == NULL) {
        Py_DECREF(want);
        return -1;
    }
    Py_DECREF(r);
    Py_XSETREF(seen, want);
    return 0;
}

int stdmagics_hooks_figure_formats(PyObject *shell, PyObject *obj)
{
    PyObject *figmod = loaded("matplotlib.figure");
    PyObject *fig = figmod ? PyObject_GetAttrString(figmod, "Figure") : NULL;
    int is_fig = fig ? PyObject_IsInstance(obj, fig) : 0;
    Py_XDECREF(fig);
    PyErr_Clear();
    return is_fig > 0 ? sync_figure_formats(shell, 0) : 0;
}

static PyMethodDef figure_repr_png_def = {"_repr_png_", figure_repr_png, METH_O,
                                          "The figure as PNG bytes (pyrometer)."};

/* Publishes fig as display_data {image/png, text/plain}; once IPython's
 * shell is up, in the formats it was told (through its display
 * formatter). Returns 0 or -1. */
static int publish_figure(PyObject *fig)
{
    if (hk.ipython_ready)
        return interp_display(fig, 0, NULL, NULL, 0);
    PyObject *png = figure_png_bytes(fig);
    PyObject *text = png ? PyObject_Repr(fig) : NULL;
    PyObject *bundle =
        text ? Py_BuildValue("{s:O, s:O}", "image/png", png, "text/plain", text) : NULL;
    int rc = bundle ? interp_display(bundle, 1, NULL, NULL, 0) : -1;
    Py_XDECREF(png);
    Py_XDECREF(text);
    Py_XDECREF(bundle);
    return rc;
}

/* Publishes and closes every open pyplot figure. Returns 0, or -1 with an
 * exception set (the figures are closed either way). */
static int show_figures(void)
{
    PyObject *plt = loaded("matplotlib.pyplot"), *helpers = loaded("matplotlib._pylab_helpers");
    PyObject *gcf = NULL, *managers = NULL, *closed = NULL;
    int rc = -1;
    if (plt == NULL || helpers == NULL)
        return 0;
    gcf = PyObject_GetAttrString(helpers, "Gcf");
    managers = gcf ? PyObject_CallMethod(gcf, "get_all_fig_managers", NULL) : NULL;
    if (managers == NULL || !PyList_Check(managers))
        goto error;
    if (PyList_GET_SIZE(managers) == 0) {
        rc = 0;
        goto error;
    }
    rc = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(managers) && rc == 0; i++) {
        PyObject *canvas = PyObject_GetAttrString(PyList_GET_ITEM(managers, i), "canvas");
        PyObject *fig = canvas ? PyObject_GetAttrString(canvas, "figure") : NULL;
        rc = fig ? publish_figure(fig) : -1;
        Py_XDECREF(canvas);
        Py_XDECREF(fig);
    }
    {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        closed = PyObject_CallMethod(plt, "close", "s", "all");
        if (closed == NULL)
            rc = -1;
        if (t) {
            PyErr_Clear();
            PyErr_Restore(t, v, tb);
        }
    }
error:
    Py_XDECREF(gcf);
    Py_XDECREF(managers);
    Py_XDECREF(closed);
    return rc;
}

void stdmagics_hooks_flush_figures(void)
{
    if (interp_silent() || loaded("matplotlib.pyplot") == NULL || !backend_is_ours())
        return;
    if (show_figures() < 0)
        report("could not show a matplotlib figure");
}

/* The backend's show(block=None): what plt.show() calls. */
static PyObject *backend_show(PyObject *self, PyObject *args, PyObject *kw)
{
    if (show_figures() < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef backend_show_def = {
    "show", (PyCFunction)(void (*)(void))backend_show, METH_VARARGS | METH_KEYWORDS,
    "show(block=None)\n--\n\nPublish every open figure inline (image/png) and close it."};

/* Fills the backend module: FigureCanvas (Agg's), FigureManager, show. */
static int fill_backend(PyObject *module)
{
    PyObject *agg = PyImport_ImportModule("matplotlib.backends.backend_agg");
    PyObject *bases = agg ? PyImport_ImportModule("matplotlib.backend_bases") : NULL;
    PyObject *canvas = bases ? PyObject_GetAttrString(agg, "FigureCanvasAgg") : NULL;
    PyObject *manager = canvas ? PyObject_GetAttrString(bases, "FigureManagerBase") : NULL;
    PyObject *show = manager ? PyCFunction_New(&backend_show_def, NULL) : NULL;
    int rc = -1;
    if (show && PyObject_SetAttrString(module, "FigureCanvas", canvas) == 0 &&
        PyObject_SetAttrString(module, "FigureManager", manager) == 0 &&
        PyObject_SetAttrString(module, "show", show) == 0 &&
        PyModule_AddStringConstant(module, "backend_version", "pyrometer inline") == 0 &&
        PyModule_AddStringConstant(module, "__doc__",
                                   "pyrometer's inline matplotlib backend: figures are "
                                   "published as image/png at plt.show() and at the end "
                                   "of each cell.") == 0)
        rc = 0;
    Py_XDECREF(agg);
    Py_XDECREF(bases);
    Py_XDECREF(canvas);
    Py_XDECREF(manager);
    Py_XDECREF(show);
    return rc;
}

/* Sets rcParams["backend"] to ours. Returns 0 or -1. */
static int set_backend_param(PyObject *mpl)
{
    PyObject *rc = PyObject_GetAttrString(mpl, "rcParams");
    if (rc == NULL)
        return -1;
    PyObject *k = PyUnicode_FromString("backend");
    PyObject *b = k ? PyUnicode_FromString(STDMAGICS_MPL_BACKEND) : NULL;
    int r = b ? PyObject_SetItem(rc, k, b) : -1;
    Py_XDECREF(k);
    Py_XDECREF(b);
    Py_DECREF(rc);
    return r;
}

static int patch_matplotlib(PyObject *mpl)
{
    if (!hk.force_inline) {
        const char *env = getenv("MPLBACKEND");
        if (env && *env)
            return 0; /* the user chose a backend */
    }
    return set_backend_param(mpl);
}

static int patch_figure(PyObject *figmod)
{
    PyObject *cls = PyObject_GetAttrString(figmod, "Figure");
    if (cls == NULL)
        return -1;
    int rc = 0;
    if (!PyObject_HasAttrString(cls, "_repr_png_")) {
        PyObject *f = PyCFunction_New(&figure_repr_png_def, NULL);
        PyObject *m = f ? PyInstanceMethod_New(f) : NULL;
        rc = m ? PyObject_SetAttrString(cls, "_repr_png_", m) : -1;
        Py_XDECREF(f);
        Py_XDECREF(m);
    }
    Py_DECREF(cls);
    /* matplotlib imported after IPython's shell came up: its formats */
    if (rc == 0 && hk.ipython_ready)
        rc = sync_figure_formats(ipybridge_shell(), 1);
    return rc;
}

int stdmagics_hooks_inline(void)
{
    PyObject *plt = loaded("matplotlib.pyplot"), *mpl = loaded("matplotlib");
    hk.force_inline = 1;
    if (backend_is_ours())
        return 0;
    if (plt) {
        PyObject *r = PyObject_CallMethod(plt, "switch_backend", "s", STDMAGICS_MPL_BACKEND);
        Py_XDECREF(r);
        return r ? 0 : -1;
    }
    return mpl ? set_backend_param(mpl) : 0;
}

/* ---- IPython.display ------------------------------------------------------------ */

/* A new random display id (a uuid4 string). */
static PyObject *new_display_id(void)
{
    char id[37];
    wire_uuid(id);
    return PyUnicode_FromString(id);
}

/* Keeps only the MIME types of data in include (if given) and not in
 * exclude. Returns 0 or -1. */
static int filter_bundle(PyObject *data, PyObject *include, PyObject *exclude)
{
    PyObject *keys = PyDict_Keys(data);
    if (keys == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        int drop = 0;
        if (include && include != Py_None) {
            int in = PySequence_Contains(include, k);
            if (in < 0)
                goto error;
            drop = !in;
        }
        if (!drop && exclude && exclude != Py_None) {
            int ex = PySequence_Contains(exclude, k);
            if (ex < 0)
                goto error;
            drop = ex;
        }
        if (drop && PyDict_DelItem(data, k) < 0)
            goto error;
    }
    Py_DECREF(keys);
    return 0;
error:
    Py_DECREF(keys);
    return -1;
}

/* Displays one object the way IPython's display() does: an object with
 * _ipython_display_ displays itself; otherwise its formatted bundle,
 * filtered by include/exclude, with metadata merged in. */
static int display_one(PyObject *obj, int raw, PyObject *include, PyObject *exclude,
                       PyObject *metadata, PyObject *did, int update)
{
    if (raw)
        return interp_display(obj, 1, metadata, did, update);
    if (!PyType_Check(obj)) {
        PyObject *own = PyObject_GetAttrString(obj, "_ipython_display_");
        if (own == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();
        } else {
            PyObject *r = PyCallable_Check(own) ? PyObject_CallNoArgs(own) : NULL;
            int callable = PyCallable_Check(own);
            Py_DECREF(own);
            if (callable) {
                Py_XDECREF(r);
                return r ? 0 : -1;
            }
        }
    }
    PyObject *md = NULL, *data = interp_format(obj, &md);
    int rc = -1;
    if (data == NULL)
        return -1;
    if (filter_bundle(data, include, exclude) < 0)
        goto done;
    if (metadata && metadata != Py_None && PyDict_Check(metadata) &&
        PyDict_Update(md, metadata) < 0)
        goto done;
    rc = PyDict_Size(data) ? interp_display(data, 1, md, did, update) : 0;
done:
    Py_DECREF(data);
    Py_XDECREF(md);
    return rc;
}

/* IPython.display.display(*objs, include=None, exclude=None, metadata=None,
 * transient=None, display_id=None, raw=False, clear=False, **kwargs),
 * publishing through the kernel. self is IPython.core.display_functions
 * (for its DisplayHandle class). */
/* Once IPython's shell is up (kernel/python/ipybridge.c), IPython's own
 * function, kept on the module as attr, does the work: its display_pub
 * publishes through the kernel, and %%capture can swap it. Returns a new
 * reference, or NULL with an exception set. */
static PyObject *ipython_original(PyObject *module, const char *attr, PyObject *args, PyObject *kw)
{
    PyObject *fn = PyObject_GetAttrString(module, attr);
    PyObject *r = fn ? PyObject_Call(fn, args, kw) : NULL;
    Py_XDECREF(fn);
    return r;
}

static PyObject *ipy_display(PyObject *self, PyObject *args, PyObject *kw)
{
    if (hk.ipython_ready)
        return ipython_original(self, "_pyrometer_ipython_display", args, kw);
    PyObject *include = Py_None, *exclude = Py_None, *metadata = Py_None, *transient = Py_None;
    PyObject *display_id = Py_None, *did = NULL, *rest = NULL, *empty = NULL;
    int raw = 0, clear = 0, update = 0;
    static char *kwlist[] = {"include",    "exclude", "metadata", "transient",
                             "display_id", "raw",     "clear",    NULL};

    /* Split off the keywords we know; IPython passes the rest (update=...)
     * along. */
    rest = kw ? PyDict_Copy(kw) : PyDict_New();
    empty = PyTuple_New(0);
    if (rest == NULL || empty == NULL)
        goto error;
    PyObject *known = PyDict_New();
    if (known == NULL)
        goto error;
    for (char **k = kwlist; *k; k++) {
        PyObject *v = PyDict_GetItemString(rest, *k);
        if (v && (PyDict_SetItemString(known, *k, v) < 0 || PyDict_DelItemString(rest, *k) < 0)) {
            Py_DECREF(known);
            goto error;
        }
    }
    int ok =
        PyArg_ParseTupleAndKeywords(empty, known, "|OOOOOpp:display", kwlist, &include, &exclude,
                                    &metadata, &transient, &display_id, &raw, &clear);
    Py_DECREF(known);
    if (!ok)
        goto error;
    PyObject *upd = PyDict_GetItemString(rest, "update");
    if (upd && (update = PyObject_IsTrue(upd)) < 0)
        goto error;

    if (display_id == Py_True) {
        did = new_display_id();
        if (did == NULL)
            goto error;
    } else if (display_id != Py_None && display_id != Py_False) {
        did = Py_NewRef(display_id);
    } else if (transient != Py_None && PyDict_Check(transient) &&
               PyDict_GetItemString(transient, "display_id")) {
        did = Py_NewRef(PyDict_GetItemString(transient, "display_id"));
    }
    if (update && did == NULL) {
        PyErr_SetString(PyExc_TypeError, "display_id required for update_display");
        goto error;
    }
    if (clear)
        interp_clear_output(1);
    if (PyTuple_GET_SIZE(args) == 0 && did) { /* an empty output to update later */
        PyObject *blank = PyDict_New();
        int rc = blank ? interp_display(blank, 1, metadata, did, update) : -1;
        Py_XDECREF(blank);
        if (rc < 0)
            goto error;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); i++)
        if (display_one(PyTuple_GET_ITEM(args, i), raw, include, exclude, metadata, did, update) <
            0)
            goto error;
    Py_DECREF(rest);
    Py_DECREF(empty);
    if (did == NULL)
        Py_RETURN_NONE;
    PyObject *cls = PyObject_GetAttrString(self, "DisplayHandle");
    PyObject *handle = cls ? PyObject_CallOneArg(cls, did) : NULL;
    Py_XDECREF(cls);
    Py_DECREF(did);
    return handle;
error:
    Py_XDECREF(rest);
    Py_XDECREF(empty);
    Py_XDECREF(did);
    return NULL;
}

/* IPython's publish_display_data(data, metadata=None, source=..., *,
 * transient=None, **kwargs). */
static PyObject *ipy_publish(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *data, *metadata = Py_None, *source = Py_None, *transient = Py_None;
    PyObject *did = Py_None, *rest = kw ? PyDict_Copy(kw) : PyDict_New(), *known = NULL;
    PyObject *result = NULL;
    int update = 0;
    static char *kwlist[] = {"data", "metadata", "source", "transient", NULL};
    if (rest == NULL)
        return NULL;
    if (hk.ipython_ready) {
        Py_DECREF(rest);
        return ipython_original(self, "_pyrometer_ipython_publish_display_data", args, kw);
    }
    known = PyDict_New();
    if (known == NULL)
        goto error;
    for (char **k = kwlist; *k; k++) {
        PyObject *v = PyDict_GetItemString(rest, *k);
        if (v && (PyDict_SetItemString(known, *k, v) < 0 || PyDict_DelItemString(rest, *k) < 0))
            goto error;
    }
    if (!PyArg_ParseTupleAndKeywords(args, known, "O|OOO:publish_display_data", kwlist, &data,
                                     &metadata, &source, &transient))
        goto error;
    PyObject *upd = PyDict_GetItemString(rest, "update");
    if (upd && (update = PyObject_IsTrue(upd)) < 0)
        goto error;
    if (transient != Py_None && PyDict_Check(transient) &&
        PyDict_GetItemString(transient, "display_id"))
        did = PyDict_GetItemString(transient, "display_id");
    if (interp_display(data, 1, metadata, did, update && did != Py_None) < 0)
        goto error;
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(rest);
    Py_XDECREF(known);
    return result;
}

static PyMethodDef ipy_display_def = {
    "display", (PyCFunction)(void (*)(void))ipy_display, METH_VARARGS | METH_KEYWORDS,
    "display(*objs, include=None, exclude=None, metadata=None, transient=None, "
    "display_id=None, raw=False, clear=False, **kwargs)\n--\n\n"
    "Display objects in the frontend (pyrometer kernel)."};

static PyMethodDef ipy_publish_def = {
    "publish_display_data", (PyCFunction)(void (*)(void))ipy_publish, METH_VARARGS | METH_KEYWORDS,
    "publish_display_data(data, metadata=None, source=None, *, transient=None, **kwargs)\n--\n\n"
    "Publish a MIME bundle (pyrometer kernel)."};

static int patch_ipython_display(PyObject *mod)
{
    PyObject *kmod = PyImport_ImportModule("_pyrometer_kernel");
    PyObject *clear = kmod ? PyObject_GetAttrString(kmod, "clear_output") : NULL;
    PyObject *disp = clear ? PyCFunction_NewEx(&ipy_display_def, mod, NULL) : NULL;
    PyObject *pub = disp ? PyCFunction_NewEx(&ipy_publish_def, mod, NULL) : NULL;
    int rc = -1;
    /* IPython's own, for when its shell is up */
    PyObject *orig_disp = pub ? PyObject_GetAttrString(mod, "display") : NULL;
    PyObject *orig_pub = orig_disp ? PyObject_GetAttrString(mod, "publish_display_data") : NULL;
    if (orig_pub && PyObject_SetAttrString(mod, "_pyrometer_ipython_display", orig_disp) == 0 &&
        PyObject_SetAttrString(mod, "_pyrometer_ipython_publish_display_data", orig_pub) == 0 &&
        PyObject_SetAttrString(mod, "display", disp) == 0 &&
        PyObject_SetAttrString(mod, "clear_output", clear) == 0 &&
        PyObject_SetAttrString(mod, "publish_display_data", pub) == 0)
        rc = 0;
    Py_XDECREF(kmod);
    Py_XDECREF(clear);
    Py_XDECREF(disp);
    Py_XDECREF(pub);
    Py_XDECREF(orig_disp);
    Py_XDECREF(orig_pub);
    return rc;
}

/* ---- the patching loader ------------------------------------------------------ */

static const struct {
    const char *name;
    int (*patch)(PyObject *module);
} patches[] = {
    {"IPython.core.display_functions", patch_ipython_display},
    {"IPython.core.interactiveshell", ipybridge_patch_interactiveshell},
    {"IPython.core.getipython", ipybridge_patch_getipython},
    {"matplotlib", patch_matplotlib},
    {"matplotlib.figure", patch_figure},
    /* The kernel's own connections, deferred so it need not import them. */
    {"linecache", interp_patch_linecache},
    {"getpass", interp_patch_getpass},
    {"threading", streams_patch_threading},
    /* Comms (comms.c): the comm package's kernel hooks, ipywidgets' targets. */
    {"comm", comms_patch_comm},
    {"ipywidgets", comms_patch_ipywidgets},
};

/* Wraps the loader that the import system found for a patched module:
 * executes the module with it, then patches. Anything else (get_source,
 * is_package, resource readers) is the original loader's. */
typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    PyObject *orig;   /* owned: the real loader */
    int which;        /* index into patches */
} PatchingLoader;

static void loader_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_CLEAR(((PatchingLoader *)self)->orig);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *loader_getattro(PyObject *self, PyObject *name)
{
    PyObject *r = PyObject_GenericGetAttr(self, name);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return r;
    PyErr_Clear();
    return PyObject_GetAttr(((PatchingLoader *)self)->orig, name);
}

static PyObject *loader_create_module(PyObject *self, PyObject *spec)
{
    PyObject *orig = ((PatchingLoader *)self)->orig;
    if (!PyObject_HasAttrString(orig, "create_module"))
        Py_RETURN_NONE;
    return PyObject_CallMethod(orig, "create_module", "(O)", spec);
}

static PyObject *loader_exec_module(PyObject *self, PyObject *module)
{
    PatchingLoader *l = (PatchingLoader *)self;
    /* The module shows the real loader from the start, as if we were not
     * here. */
    PyObject *spec = PyObject_GetAttrString(module, "__spec__");
    if (spec == NULL || PyObject_SetAttrString(module, "__loader__", l->orig) < 0 ||
        (spec != Py_None && PyObject_SetAttrString(spec, "loader", l->orig) < 0)) {
        Py_XDECREF(spec);
        return NULL;
    }
    Py_DECREF(spec);
    PyObject *r = PyObject_CallMethod(l->orig, "exec_module", "(O)", module);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    if (patches[l->which].patch(module) < 0) {
        char what[128];
        snprintf(what, sizeof what, "could not connect %s to the kernel", patches[l->which].name);
        report(what);
    }
    Py_RETURN_NONE;
}

static PyMethodDef loader_methods[] = {
    {"create_module", loader_create_module, METH_O, NULL},
    {"exec_module", loader_exec_module, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot loader_slots[] = {
    {Py_tp_doc, "pyrometer: runs a module with its own loader, then connects it to the kernel."},
    {Py_tp_dealloc, loader_dealloc},
    {Py_tp_getattro, loader_getattro},
    {Py_tp_methods, loader_methods},
    {0, NULL},
};

static PyType_Spec loader_spec = {
    "_pyrometer_kernel.PatchingLoader",
    sizeof(PatchingLoader),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    loader_slots,
};

/* ---- the import hook ------------------------------------------------------------ */

/* Asks the finders after us on sys.meta_path. Returns a new spec, None, or
 * NULL with an exception. */
static PyObject *find_elsewhere(PyObject *self, PyObject *args)
{
    PyObject *meta = PySys_GetObject("meta_path"); /* borrowed */
    PyObject *copy = meta ? PySequence_List(meta) : NULL;
    if (copy == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(copy); i++) {
        PyObject *f = PyList_GET_ITEM(copy, i);
        if (f == self || !PyObject_HasAttrString(f, "find_spec"))
            continue;
        PyObject *fs = PyObject_GetAttrString(f, "find_spec");
        PyObject *spec = fs ? PyObject_CallObject(fs, args) : NULL;
        Py_XDECREF(fs);
        if (spec == NULL || spec != Py_None) {
            Py_DECREF(copy);
            return spec;
        }
        Py_DECREF(spec);
    }
    Py_DECREF(copy);
    Py_RETURN_NONE;
}

/* find_spec(fullname, path=None, target=None) */
static PyObject *hook_find_spec(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"fullname", "path", "target", NULL};
    PyObject *path = Py_None, *target = Py_None;
    const char *name;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|OO:find_spec", kwlist, &name, &path, &target))
        return NULL;
    if (strcmp(name, BACKEND_MODULE) == 0) {
        PyObject *mach = PyImport_ImportModule("importlib.machinery");
        PyObject *spec = mach ? PyObject_CallMethod(mach, "ModuleSpec", "sO", name, self) : NULL;
        Py_XDECREF(mach);
        return spec;
    }
    int which = -1;
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++)
        if (strcmp(name, patches[i].name) == 0)
            which = (int)i;
    if (which < 0)
        Py_RETURN_NONE;
    PyObject *fargs = Py_BuildValue("(sOO)", name, path, target);
    PyObject *spec = fargs ? find_elsewhere(self, fargs) : NULL;
    Py_XDECREF(fargs);
    if (spec == NULL || spec == Py_None)
        return spec;
    PyObject *orig = PyObject_GetAttrString(spec, "loader");
    if (orig == NULL || orig == Py_None) {
        Py_XDECREF(orig);
        PyErr_Clear();
        return spec;
    }
    PatchingLoader *l = PyObject_New(PatchingLoader, (PyTypeObject *)hk.loader_type);
    if (l == NULL) {
        Py_DECREF(orig);
        Py_DECREF(spec);
        return NULL;
    }
    l->orig = orig;
    l->which = which;
    int rc = PyObject_SetAttrString(spec, "loader", (PyObject *)l);
    Py_DECREF(l);
    if (rc < 0) {
        Py_DECREF(spec);
        return NULL;
    }
    return spec;
}

/* The hook is also the loader of the backend module. */
static PyObject *hook_create_module(PyObject *self, PyObject *spec)
{
    Py_RETURN_NONE; /* the default module object */
}

static PyObject *hook_exec_module(PyObject *self, PyObject *module)
{
    if (fill_backend(module) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *hook_repr(PyObject *self)
{
    return PyUnicode_FromString("<pyrometer import hook: IPython.display and matplotlib>");
}

static PyMethodDef hook_methods[] = {
    {"find_spec", (PyCFunction)(void (*)(void))hook_find_spec, METH_VARARGS | METH_KEYWORDS,
     "find_spec(fullname, path=None, target=None)\n--\n\n"
     "Leaves every import to the other finders, but patches IPython.display and matplotlib "
     "after they run."},
    {"create_module", hook_create_module, METH_O, NULL},
    {"exec_module", hook_exec_module, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static void hook_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot hook_slots[] = {
    {Py_tp_doc, "pyrometer's import hook: connects IPython.display and matplotlib to the "
                "kernel when they are imported."},
    {Py_tp_dealloc, hook_dealloc},
    {Py_tp_repr, hook_repr},
    {Py_tp_methods, hook_methods},
    {0, NULL},
};

static PyType_Spec hook_spec = {
    "_pyrometer_kernel.ImportHook",
    sizeof(PyObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    hook_slots,
};

/* ---- DisplayHandle -------------------------------------------------------------- */

typedef struct {
    PyObject ob_base;     /* PyObject_HEAD */
    PyObject *display_id; /* owned */
} DisplayHandle;

static PyObject *handle_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"display_id", NULL};
    PyObject *id = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:DisplayHandle", kwlist, &id))
        return NULL;
    DisplayHandle *h = (DisplayHandle *)type->tp_alloc(type, 0);
    if (h == NULL)
        return NULL;
    h->display_id = id == Py_None ? new_display_id() : Py_NewRef(id);
    if (h->display_id == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static void handle_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_CLEAR(((DisplayHandle *)self)->display_id);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *handle_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<DisplayHandle display_id=%S>",
                                ((DisplayHandle *)self)->display_id);
}

/* display(obj, display_id=self.display_id, update=update, **kw) through the
 * kernel's display(). */
static PyObject *handle_call(PyObject *self, PyObject *args, PyObject *kw, int update)
{
    PyObject *obj;
    if (!PyArg_ParseTuple(args, update ? "O:update" : "O:display", &obj))
        return NULL;
    DisplayHandle *h = (DisplayHandle *)self;
    PyObject *raw = kw ? PyDict_GetItemString(kw, "raw") : NULL;
    PyObject *md = kw ? PyDict_GetItemString(kw, "metadata") : NULL;
    int israw = raw ? PyObject_IsTrue(raw) : 0;
    if (israw < 0)
        return NULL;
    if (interp_display(obj, israw, md, h->display_id, update) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *handle_display(PyObject *self, PyObject *args, PyObject *kw)
{
    return handle_call(self, args, kw, 0);
}

static PyObject *handle_update(PyObject *self, PyObject *args, PyObject *kw)
{
    return handle_call(self, args, kw, 1);
}

static PyMethodDef handle_methods[] = {
    {"display", (PyCFunction)(void (*)(void))handle_display, METH_VARARGS | METH_KEYWORDS,
     "display(obj, raw=False, metadata=None)\n--\n\n"
     "Make a new display with this id (display_data)."},
    {"update", (PyCFunction)(void (*)(void))handle_update, METH_VARARGS | METH_KEYWORDS,
     "update(obj, raw=False, metadata=None)\n--\n\n"
     "Replace every display with this id (update_display_data)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef handle_members[] = {
    {"display_id", T_OBJECT_EX, offsetof(DisplayHandle, display_id), 0, "the display's id"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_doc, "A handle on an updatable display: .display(obj), .update(obj)."},
    {Py_tp_new, handle_new},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_repr, handle_repr},
    {Py_tp_methods, handle_methods},
    {Py_tp_members, handle_members},
    {0, NULL},
};

static PyType_Spec handle_spec = {
    "_pyrometer_kernel.DisplayHandle",
    sizeof(DisplayHandle),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    handle_slots,
};

PyObject *stdmagics_display_handle_new(PyObject *display_id)
{
    if (hk.handle_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "DisplayHandle is not ready");
        return NULL;
    }
    return PyObject_CallOneArg(hk.handle_type, display_id);
}

/* ---- install --------------------------------------------------------------------- */

int stdmagics_hooks_ipython_ready(PyObject *shell)
{
    hk.ipython_ready = 1;
    return sync_figure_formats(shell, 1);
}

int stdmagics_hooks_install(void)
{
    PyObject *kmod = NULL, *hook_type = NULL;
    int rc = -1;

    if (hk.hook != NULL)
        return 0;
    hk.loader_type = PyType_FromSpec(&loader_spec);
    hk.handle_type = hk.loader_type ? PyType_FromSpec(&handle_spec) : NULL;
    hook_type = hk.handle_type ? PyType_FromSpec(&hook_spec) : NULL;
    hk.hook = hook_type ? PyObject_CallNoArgs(hook_type) : NULL;
    kmod = hk.hook ? PyImport_ImportModule("_pyrometer_kernel") : NULL;
    if (kmod == NULL || PyObject_SetAttrString(kmod, "DisplayHandle", hk.handle_type) < 0)
        goto error;
    PyObject *meta = PySys_GetObject("meta_path"); /* borrowed */
    if (meta == NULL || !PyList_Check(meta)) {
        PyErr_SetString(PyExc_RuntimeError, "sys.meta_path is not a list");
        goto error;
    }
    if (PyList_Insert(meta, 0, hk.hook) < 0)
        goto error;
    /* Already imported (not at start-up, but be safe): patch now. */
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        PyObject *m = loaded(patches[i].name);
        if (m && patches[i].patch(m) < 0)
            goto error;
    }
    rc = 0;
error:
    Py_XDECREF(kmod);
    Py_XDECREF(hook_type);
    return rc;
}
