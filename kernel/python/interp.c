/* interp.c - the embedded CPython: interpreter start-up, the kernel's
 * internal module `_pyrometer_kernel`, running a cell (transform, compile,
 * exec, display of the last expression), the IPython-style output history
 * (_, __, ___, _N, In, Out), rich display, input(), and error reports.
 */
#include "interp.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"
#include "comms.h"
#include "errors.h"
#include "events.h"
#include "exiter.h"
#include "history.h"
#include "introspect.h"
#include "ipybridge.h"
#include "magics.h"
#include "module.h"
#include "pretty.h"
#include "session.h"
#include "shell.h"
#include "stdmagics.h"
#include "stdmagics_hooks.h"
#include "streams.h"
#include "transform.h"

#define UNSTORED_KEPT 256

/* Interpreter-wide state. Protected by the GIL. */
static struct {
    publisher *pub;      /* borrowed; outlives the interpreter */
    const wire_msg *req; /* the execute_request being run, or NULL */
    int silent, store_history, allow_stdin;
    long execution_count;
    long serial;           /* every compiled cell, counted or not */
    PyObject *kmod;        /* owned: the _pyrometer_kernel module */
    PyObject *main_dict;   /* borrowed from __main__ */
    PyObject *in_list;     /* owned: In */
    PyObject *out_dict;    /* owned: Out */
    PyObject *linecache;   /* owned: linecache.cache, or the cells until linecache is imported */
    PyObject *stdin_error; /* owned: StdinNotImplementedError */
    PyObject *compile;     /* owned: builtins.compile */
    PyObject *ast_expr;    /* owned: _ast.Expr */
    PyObject *ast_interactive; /* owned: _ast.Interactive */
    /* The linecache names of the last UNSTORED_KEPT cells run with
     * store_history false (owned; a ring). Frontends send such cells all the
     * time (VS Code's variable view, widgets); older ones leave linecache so
     * they do not pile up (about 500 bytes each). */
    PyObject *unstored[UNSTORED_KEPT];
    size_t unstored_next;
    int hosted;           /* the interpreter was running before the kernel */
    PyObject *cell_value; /* owned: what the display hook showed in this cell, or NULL */
} st;

const wire_msg *interp_current_request(void)
{
    return st.req;
}

void interp_set_request(publisher *pub, const wire_msg *req)
{
    if (pub != NULL)
        st.pub = pub;
    st.req = req;
    st.silent = 0;
    st.store_history = 0;
    st.allow_stdin = 0;
}

publisher *interp_publisher(void)
{
    return st.pub;
}

PyObject *interp_user_ns(void)
{
    return st.main_dict;
}

int interp_silent(void)
{
    return st.req != NULL && st.silent;
}

long interp_execution_count(void)
{
    return st.execution_count;
}

/* ---- Python -> JSON ----------------------------------------------------- */

json_t *interp_to_json(PyObject *obj)
{
    if (obj == Py_None)
        return json_null();
    if (PyBool_Check(obj))
        return json_boolean(obj == Py_True);
    if (PyLong_Check(obj)) {
        long long v = PyLong_AsLongLong(obj);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return json_real(PyLong_AsDouble(obj));
        }
        return json_integer(v);
    }
    if (PyFloat_Check(obj))
        return json_real(PyFloat_AS_DOUBLE(obj));
    if (PyUnicode_Check(obj)) {
        Py_ssize_t n;
        PyObject *b = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
        if (b == NULL)
            return NULL;
        n = PyBytes_GET_SIZE(b);
        json_t *s = json_stringn(PyBytes_AS_STRING(b), (size_t)n);
        Py_DECREF(b);
        if (s == NULL)
            PyErr_SetString(PyExc_ValueError, "string is not valid UTF-8");
        return s;
    }
    if (PyBytes_Check(obj) || PyByteArray_Check(obj)) {
        PyObject *b64 = PyImport_ImportModule("base64");
        PyObject *enc = b64 ? PyObject_CallMethod(b64, "b64encode", "(O)", obj) : NULL;
        Py_XDECREF(b64);
        if (enc == NULL)
            return NULL;
        json_t *s = json_stringn(PyBytes_AS_STRING(enc), (size_t)PyBytes_GET_SIZE(enc));
        Py_DECREF(enc);
        return s;
    }
    if (PyDict_Check(obj)) {
        json_t *o = json_object();
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (o && PyDict_Next(obj, &pos, &k, &v)) {
            PyObject *ks = PyObject_Str(k);
            if (ks == NULL)
                goto dict_error;
            const char *kc = PyUnicode_AsUTF8(ks);
            json_t *jv = kc ? interp_to_json(v) : NULL;
            if (jv == NULL || json_object_set_new(o, kc, jv) < 0) {
                Py_DECREF(ks);
                goto dict_error;
            }
            Py_DECREF(ks);
        }
        return o;
    dict_error:
        json_decref(o);
        return NULL;
    }
    if (PyList_Check(obj) || PyTuple_Check(obj)) {
        PyObject *seq = PySequence_Fast(obj, "");
        if (seq == NULL)
            return NULL;
        json_t *a = json_array();
        for (Py_ssize_t i = 0; a && i < PySequence_Fast_GET_SIZE(seq); i++) {
            json_t *jv = interp_to_json(PySequence_Fast_GET_ITEM(seq, i));
            if (jv == NULL) {
                json_decref(a);
                a = NULL;
                break;
            }
            json_array_append_new(a, jv);
        }
        Py_DECREF(seq);
        return a;
    }
    PyObject *s = PyObject_Str(obj);
    if (s == NULL)
        return NULL;
    json_t *j = interp_to_json(s);
    Py_DECREF(s);
    return j;
}

/* Takes the raised exception: returns it normalised, with its traceback
 * attached, and clears the error indicator. NULL if none was set. */
static PyObject *take_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* ---- rich display --------------------------------------------------------- */

static const struct {
    const char *method;
    const char *mime;
} repr_methods[] = {
    {"_repr_html_", "text/html"},        {"_repr_markdown_", "text/markdown"},
    {"_repr_latex_", "text/latex"},      {"_repr_svg_", "image/svg+xml"},
    {"_repr_png_", "image/png"},         {"_repr_jpeg_", "image/jpeg"},
    {"_repr_json_", "application/json"}, {"_repr_javascript_", "application/javascript"},
    {"_repr_pdf_", "application/pdf"},
};

/* 0 when obj's _repr_*_ methods are not to be called, as IPython's
 * get_real_method says: a class (its methods are unbound), or an object
 * that answers any attribute (a Mock, a proxy: it has a canary attribute
 * that nothing defines). 1 when they are. Never raises. */
static int has_real_methods(PyObject *obj)
{
    if (PyType_Check(obj))
        return 0;
    PyObject *canary = PyObject_GetAttrString(obj, "_ipython_canary_method_should_not_exist_");
    PyErr_Clear();
    Py_XDECREF(canary);
    return canary == NULL;
}

/* obj's callable attribute name (a new reference), or NULL with no
 * exception set. For objects has_real_methods() accepts. */
static PyObject *real_method(PyObject *obj, const char *name)
{
    PyObject *fn = PyObject_GetAttrString(obj, name);
    PyErr_Clear();
    if (fn && !PyCallable_Check(fn))
        Py_CLEAR(fn);
    return fn;
}

/* Calls obj.method() if obj has it (real_method). Returns a new reference,
 * Py_None when absent, or NULL with an exception set. */
static PyObject *call_repr(PyObject *obj, const char *method)
{
    PyObject *fn = real_method(obj, method);
    if (fn == NULL)
        Py_RETURN_NONE;
    PyObject *r = PyObject_CallNoArgs(fn);
    Py_DECREF(fn);
    return r;
}

static json_t *error_content(void);

/* A formatter that raised: its error is shown as an error output, as under
 * ipykernel, and the MIME type is skipped (the cell goes on); returns 0.
 * An interrupt or exit is not the formatter's: -1, still raised. */
static int formatter_failed(void)
{
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) || PyErr_ExceptionMatches(PyExc_SystemExit))
        return -1;
    interp_publish("error", error_content());
    PyErr_Clear();
    return 0;
}

PyObject *interp_format(PyObject *obj, PyObject **metadata)
{
    if (ipybridge_active())
        return ipybridge_format(obj, metadata);
    PyObject *data = PyDict_New(), *md = PyDict_New(), *r = NULL;
    if (data == NULL || md == NULL)
        goto error;
    if (!has_real_methods(obj)) /* asked once for all of its methods */
        goto plain;
    /* An object that displays itself (_ipython_display_) does, and has no
     * bundle to show, as under IPython. */
    PyObject *self_display = real_method(obj, "_ipython_display_");
    if (self_display) {
        r = PyObject_CallNoArgs(self_display);
        Py_DECREF(self_display);
        if (r) {
            Py_DECREF(r);
            *metadata = md;
            return data;
        }
        if (formatter_failed() < 0) /* then the bundle, as IPython does */
            goto error;
    }
    r = call_repr(obj, "_repr_mimebundle_");
    if (r == NULL) {
        if (formatter_failed() < 0)
            goto error;
    } else if (PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 2 &&
               PyDict_Check(PyTuple_GET_ITEM(r, 0))) {
        if (PyDict_Update(data, PyTuple_GET_ITEM(r, 0)) < 0)
            goto error;
        if (PyDict_Check(PyTuple_GET_ITEM(r, 1)) && PyDict_Update(md, PyTuple_GET_ITEM(r, 1)) < 0)
            goto error;
    } else if (PyDict_Check(r)) {
        if (PyDict_Update(data, r) < 0)
            goto error;
    }
    Py_CLEAR(r);
    for (size_t i = 0; i < sizeof repr_methods / sizeof repr_methods[0]; i++) {
        if (PyDict_GetItemString(data, repr_methods[i].mime))
            continue;
        r = call_repr(obj, repr_methods[i].method);
        if (r == NULL) {
            if (formatter_failed() < 0)
                goto error;
            continue;
        }
        if (r != Py_None) {
            PyObject *val = r, *m = NULL;
            if (PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 2) { /* (data, metadata) */
                val = PyTuple_GET_ITEM(r, 0);
                m = PyTuple_GET_ITEM(r, 1);
            }
            if (PyDict_SetItemString(data, repr_methods[i].mime, val) < 0)
                goto error;
            if (m && PyDict_Check(m) && PyDict_SetItemString(md, repr_methods[i].mime, m) < 0)
                goto error;
        }
        Py_CLEAR(r);
    }
plain:
    if (!PyDict_GetItemString(data, "text/plain")) {
        PyObject *rep = pretty_text(obj);
        if (rep == NULL)
            goto error;
        int rc = PyDict_SetItemString(data, "text/plain", rep);
        Py_DECREF(rep);
        if (rc < 0)
            goto error;
    }
    *metadata = md;
    return data;
error:
    Py_XDECREF(r);
    Py_XDECREF(data);
    Py_XDECREF(md);
    return NULL;
}

int interp_display(PyObject *obj, int raw, PyObject *metadata, PyObject *display_id, int update)
{
    PyObject *data = NULL, *md = NULL;
    json_t *jdata = NULL, *jmd = NULL, *content = NULL;

    if ((st.silent && st.req != NULL) || st.pub == NULL)
        return 0; /* a silent request publishes nothing, nor a stopped kernel */
    if (raw) {
        if (!PyDict_Check(obj)) {
            PyErr_SetString(PyExc_TypeError, "display(raw=True) expects a dict of MIME types");
            return -1;
        }
        data = Py_NewRef(obj);
        md = PyDict_New();
    } else {
        data = interp_format(obj, &md);
    }
    if (data == NULL || md == NULL)
        goto error;
    if (PyDict_GET_SIZE(data) == 0) { /* it displayed itself (_ipython_display_) */
        Py_DECREF(data);
        Py_DECREF(md);
        return 0;
    }
    if (metadata && metadata != Py_None && PyDict_Check(metadata) &&
        PyDict_Update(md, metadata) < 0)
        goto error;
    jdata = interp_to_json(data);
    jmd = jdata ? interp_to_json(md) : NULL;
    if (jmd == NULL)
        goto error;
    json_t *transient = json_object();
    if (display_id && display_id != Py_None) {
        json_t *id = interp_to_json(display_id);
        if (id == NULL) {
            json_decref(transient);
            goto error;
        }
        json_object_set_new(transient, "display_id", id);
    }
    content = json_pack("{s:o, s:o, s:o}", "data", jdata, "metadata", jmd, "transient", transient);
    jdata = jmd = NULL;
    if (content == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    st.pub->sync(st.pub->self);
    st.pub->iopub(st.pub->self, update ? "update_display_data" : "display_data", content,
                  st.req ? st.req->header : NULL);
    Py_DECREF(data);
    Py_DECREF(md);
    return 0;
error:
    json_decref(jdata);
    json_decref(jmd);
    Py_XDECREF(data);
    Py_XDECREF(md);
    return -1;
}

void interp_clear_output(int wait)
{
    if (st.pub == NULL)
        return;
    st.pub->sync(st.pub->self);
    st.pub->iopub(st.pub->self, "clear_output", json_pack("{s:b}", "wait", wait),
                  st.req ? st.req->header : NULL);
}

/* ---- errors --------------------------------------------------------------- */

static int is_usage_error(PyObject *exc)
{
    PyObject *ue = magics_usage_error_type();
    int r = ue ? PyObject_IsInstance(exc, ue) : 0;
    Py_XDECREF(ue);
    PyErr_Clear();
    if (r > 0)
        return 1;
    /* IPython's magics raise IPython's UsageError (only if it is loaded). */
    PyObject *err = PyDict_GetItemString(PyImport_GetModuleDict(), "IPython.core.error");
    PyObject *ipy = err ? PyObject_GetAttrString(err, "UsageError") : NULL;
    r = ipy ? PyObject_IsInstance(exc, ipy) : 0;
    Py_XDECREF(ipy);
    PyErr_Clear();
    return r > 0;
}

/* {ename, evalue, traceback} for exc (stolen; NULL: SystemError). The
 * traceback holds the user's frames only: the cell is the outermost frame
 * that the kernel evaluates, so nothing of the kernel appears. It is
 * IPython's coloured layout (errors.c). */
static json_t *error_content_of(PyObject *exc)
{
    json_t *tb_lines = NULL;
    const char *ename = "Exception", *evalue = "";
    PyObject *evalue_s = NULL;

    if (exc == NULL)
        exc = Py_NewRef(PyExc_SystemError);
    ename = Py_TYPE(exc)->tp_name;
    const char *dot = strrchr(ename, '.');
    if (dot)
        ename = dot + 1;
    evalue_s = PyObject_Str(exc);
    if (evalue_s && PyUnicode_AsUTF8(evalue_s))
        evalue = PyUnicode_AsUTF8(evalue_s);
    PyErr_Clear();
    if (is_usage_error(exc)) { /* a magic's usage message needs no traceback */
        char line[2048];
        snprintf(line, sizeof line, "UsageError: %s", evalue);
        tb_lines = json_pack("[s]", line);
    } else {
        tb_lines = errors_traceback(exc, st.linecache);
    }
    if (tb_lines == NULL)
        tb_lines = json_array();
    PyErr_Clear();
    json_t *content =
        json_pack("{s:s, s:s, s:o}", "ename", ename, "evalue", evalue, "traceback", tb_lines);
    Py_XDECREF(evalue_s);
    Py_XDECREF(exc);
    return content;
}

/* Turns the raised exception into {ename, evalue, traceback} and clears it. */
static json_t *error_content(void)
{
    return error_content_of(take_exception());
}

json_t *interp_error_content(PyObject *exc)
{
    Py_XINCREF(exc);
    return error_content_of(exc);
}

void interp_publish(const char *msg_type, json_t *content)
{
    if (content == NULL)
        return;
    if (st.pub == NULL || (st.silent && st.req != NULL)) {
        json_decref(content);
        return;
    }
    st.pub->sync(st.pub->self);
    st.pub->iopub(st.pub->self, msg_type, content, st.req ? st.req->header : NULL);
}

/* sys.last_type, last_value, last_traceback (and last_exc from 3.12): what
 * pdb.pm() and IPython's %debug look at. */
static void set_last_exception(PyObject *exc)
{
    PyObject *tb = PyException_GetTraceback(exc);
    if (PySys_SetObject("last_type", (PyObject *)Py_TYPE(exc)) < 0 ||
        PySys_SetObject("last_value", exc) < 0 ||
        PySys_SetObject("last_traceback", tb ? tb : Py_None) < 0
#if PY_VERSION_HEX >= 0x030C0000
        || PySys_SetObject("last_exc", exc) < 0
#endif
    )
        PyErr_Clear();
    Py_XDECREF(tb);
}

/* ---- the display hook and output history ----------------------------------- */

static int set_main(const char *name, PyObject *v)
{
    return PyDict_SetItemString(st.main_dict, name, v);
}

/* _ __ ___ and _N, Out[N], as IPython keeps them. */
static int store_output(PyObject *obj)
{
    PyObject *prev1 = PyDict_GetItemString(st.main_dict, "_");
    PyObject *prev2 = PyDict_GetItemString(st.main_dict, "__");
    Py_XINCREF(prev1);
    Py_XINCREF(prev2);
    int rc = 0;
    if (prev2)
        rc |= set_main("___", prev2);
    if (prev1)
        rc |= set_main("__", prev1);
    rc |= set_main("_", obj);
    Py_XDECREF(prev1);
    Py_XDECREF(prev2);
    char name[32];
    snprintf(name, sizeof name, "_%ld", st.execution_count);
    rc |= set_main(name, obj);
    PyObject *key = PyLong_FromLong(st.execution_count);
    if (key == NULL)
        return -1;
    rc |= PyDict_SetItem(st.out_dict, key, obj);
    Py_DECREF(key);
    return rc ? -1 : 0;
}

static PyObject *displayhook(PyObject *self, PyObject *obj)
{
    if (obj == Py_None || st.silent)
        Py_RETURN_NONE;
    if (exiter_displayed(obj)) /* a bare `exit` */
        Py_RETURN_NONE;
    Py_XSETREF(st.cell_value, Py_NewRef(obj));
    if (st.store_history && store_output(obj) < 0)
        return NULL;
    PyObject *md = NULL;
    PyObject *data = interp_format(obj, &md);
    if (data == NULL) {
        /* A value whose repr fails: its error is shown and the cell still
         * succeeds, as under ipykernel (Run All goes on). */
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
            PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_MemoryError))
            return NULL;
        interp_publish("error", error_content());
        Py_RETURN_NONE;
    }
    if (PyDict_GET_SIZE(data) == 0) { /* it displayed itself (_ipython_display_) */
        Py_DECREF(data);
        Py_DECREF(md);
        Py_RETURN_NONE;
    }
    json_t *jdata = interp_to_json(data);
    json_t *jmd = jdata ? interp_to_json(md) : NULL;
    Py_DECREF(data);
    Py_DECREF(md);
    if (jmd == NULL) {
        json_decref(jdata);
        return NULL;
    }
    if (st.store_history) {
        const char *tp = json_string_value(json_object_get(jdata, "text/plain"));
        if (tp)
            history_store_output(st.execution_count, tp);
    }
    st.pub->sync(st.pub->self);
    st.pub->iopub(st.pub->self, "execute_result",
                  json_pack("{s:I, s:o, s:o}", "execution_count", (json_int_t)st.execution_count,
                            "data", jdata, "metadata", jmd),
                  st.req ? st.req->header : NULL);
    Py_RETURN_NONE;
}

/* ---- builtins the kernel provides --------------------------------------- */

static PyObject *k_display(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *metadata = Py_None, *display_id = Py_None, *transient = Py_None;
    int raw = 0, update = 0;
    PyObject *empty = NULL;
    static char *kwlist[] = {"raw",       "metadata", "display_id", "update",
                             "transient", "include",  "exclude",    NULL};
    PyObject *include = NULL, *exclude = NULL;

    empty = PyTuple_New(0);
    if (empty == NULL)
        return NULL;
    int ok = PyArg_ParseTupleAndKeywords(empty, kw, "|pOOpOOO:display", kwlist, &raw, &metadata,
                                         &display_id, &update, &transient, &include, &exclude);
    Py_DECREF(empty);
    if (!ok)
        return NULL;
    if (display_id == Py_True) { /* display(obj, display_id=True): make one up */
        char id[37];
        wire_uuid(id);
        display_id = PyUnicode_FromString(id);
        if (display_id == NULL)
            return NULL;
    } else {
        Py_INCREF(display_id);
    }
    if (update && display_id == Py_None) {
        Py_DECREF(display_id);
        PyErr_SetString(PyExc_TypeError, "display(update=True) needs a display_id");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); i++) {
        if (interp_display(PyTuple_GET_ITEM(args, i), raw, metadata, display_id, update) < 0) {
            Py_DECREF(display_id);
            return NULL;
        }
    }
    if (display_id != Py_None) {
        /* Like IPython: asked for an id, return a handle (.update, .display). */
        PyObject *handle = stdmagics_display_handle_new(display_id);
        Py_DECREF(display_id);
        return handle;
    }
    Py_DECREF(display_id);
    Py_RETURN_NONE;
}

static PyObject *k_clear_output(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"wait", NULL};
    int wait = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:clear_output", kwlist, &wait))
        return NULL;
    interp_clear_output(wait);
    Py_RETURN_NONE;
}

static PyObject *read_input(PyObject *prompt, int password)
{
    char *line = NULL, err[256];
    const char *p = "";
    Py_ssize_t plen = 0;
    size_t len = 0;
    PyObject *ps = NULL;

    if (prompt && prompt != Py_None) {
        ps = PyObject_Str(prompt);
        if (ps == NULL)
            return NULL;
        p = PyUnicode_AsUTF8AndSize(ps, &plen);
        if (p == NULL) {
            Py_DECREF(ps);
            return NULL;
        }
    }
    if (!st.allow_stdin || st.req == NULL) {
        Py_XDECREF(ps);
        PyErr_SetString(st.stdin_error,
                        "input() was called, but this frontend does not support input requests.");
        return NULL;
    }
    st.pub->sync(st.pub->self);
    const wire_msg *req = st.req;
    publisher *pub = st.pub;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pub->input(pub->self, req, p, (size_t)plen, password, &line, &len, err, sizeof err);
    Py_END_ALLOW_THREADS
    Py_XDECREF(ps);
    if (rc == 1) {
        if (PyErr_CheckSignals() < 0)
            return NULL;
        PyErr_SetNone(PyExc_KeyboardInterrupt);
        return NULL;
    }
    if (rc < 0) {
        PyErr_Format(PyExc_EOFError, "%s", err);
        return NULL;
    }
    PyObject *res = PyUnicode_DecodeUTF8(line, (Py_ssize_t)len, "replace");
    free(line);
    return res;
}

static PyObject *k_input(PyObject *self, PyObject *args)
{
    PyObject *prompt = NULL;
    if (!PyArg_UnpackTuple(args, "input", 0, 1, &prompt))
        return NULL;
    return read_input(prompt, 0);
}

static PyObject *k_getpass(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"prompt", "stream", NULL};
    PyObject *prompt = NULL, *stream = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:getpass", kwlist, &prompt, &stream))
        return NULL;
    if (prompt == NULL) {
        PyObject *dflt = PyUnicode_FromString("Password: ");
        if (dflt == NULL)
            return NULL;
        PyObject *r = read_input(dflt, 1);
        Py_DECREF(dflt);
        return r;
    }
    return read_input(prompt, 1);
}

static PyMethodDef kernel_methods[] = {
    {"displayhook", displayhook, METH_O, "The kernel's sys.displayhook."},
    {"display", (PyCFunction)(void (*)(void))k_display, METH_VARARGS | METH_KEYWORDS,
     "display(*objs, raw=False, metadata=None, display_id=None, update=False)\n--\n\n"
     "Publish objects as rich output (display_data)."},
    {"clear_output", (PyCFunction)(void (*)(void))k_clear_output, METH_VARARGS | METH_KEYWORDS,
     "clear_output(wait=False)\n--\n\nClear the output of the current cell."},
    {"input", k_input, METH_VARARGS,
     "input(prompt='')\n--\n\nRead a line from the frontend (input_request on stdin)."},
    {"getpass", (PyCFunction)(void (*)(void))k_getpass, METH_VARARGS | METH_KEYWORDS,
     "getpass(prompt='Password: ', stream=None)\n--\n\nRead a password from the frontend."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kernel_module = {
    PyModuleDef_HEAD_INIT,
    "_pyrometer_kernel",
    "The pyrometer kernel's own functions: display, input, magics and streams.",
    -1,
    kernel_methods,
};

/* ---- start-up -------------------------------------------------------------- */

static int set_builtin(PyObject *builtins, const char *name, const char *attr)
{
    PyObject *v = PyObject_GetAttrString(st.kmod, attr);
    if (v == NULL)
        return -1;
    int rc = PyObject_SetAttrString(builtins, name, v);
    Py_DECREF(v);
    return rc;
}

static int install(void)
{
    PyObject *builtins = NULL, *sys = NULL, *astm = NULL, *main_mod;
    int rc = -1;

    st.kmod = PyModule_Create(&kernel_module);
    if (st.kmod == NULL)
        goto error;
    PyObject *modules = PyImport_GetModuleDict();
    if (PyDict_SetItemString(modules, "_pyrometer_kernel", st.kmod) < 0)
        goto error;
    st.stdin_error = PyErr_NewExceptionWithDoc(
        "_pyrometer_kernel.StdinNotImplementedError",
        "input() was called but the frontend does not accept input requests.",
        PyExc_NotImplementedError, NULL);
    if (st.stdin_error == NULL ||
        PyModule_AddObjectRef(st.kmod, "StdinNotImplementedError", st.stdin_error) < 0)
        goto error;
    main_mod = PyImport_AddModule("__main__");
    if (main_mod == NULL)
        goto error;
    st.main_dict = PyModule_GetDict(main_mod);
    builtins = PyImport_ImportModule("builtins");
    sys = PyImport_ImportModule("sys");
    astm = PyImport_ImportModule("_ast"); /* the C node types; ast.py is not needed */
    if (builtins == NULL || sys == NULL || astm == NULL)
        goto error;
    st.compile = PyObject_GetAttrString(builtins, "compile");
    st.ast_expr = PyObject_GetAttrString(astm, "Expr");
    st.ast_interactive = PyObject_GetAttrString(astm, "Interactive");
    if (st.compile == NULL || st.ast_expr == NULL || st.ast_interactive == NULL)
        goto error;
    /* Cell sources wait here until linecache is imported (the import hook
     * then calls interp_patch_linecache). */
    st.linecache = PyDict_New();
    if (st.linecache == NULL)
        goto error;
    /* The registry first, then its members register themselves. */
    if (streams_install(st.kmod, sys) < 0 || events_install(st.kmod) < 0 ||
        magics_install(st.kmod) < 0 || introspect_install(st.kmod) < 0 ||
        stdmagics_register() < 0 || magics_register_extension() < 0 || errors_register_magics() < 0)
        goto error;
    if (set_builtin(builtins, "display", "display") < 0 ||
        set_builtin(builtins, "input", "input") < 0 ||
        set_builtin(builtins, "clear_output", "clear_output") < 0 ||
        PyObject_SetAttrString(builtins, "__pyrometer__", st.kmod) < 0 ||
        exiter_install(st.kmod, builtins) < 0 || shell_install(st.kmod, builtins) < 0)
        goto error;
    PyObject *hook = PyObject_GetAttrString(st.kmod, "displayhook");
    if (hook == NULL)
        goto error;
    rc = PySys_SetObject("displayhook", hook);
    Py_DECREF(hook);
    if (rc < 0)
        goto error;
    rc = -1;
    st.in_list = Py_BuildValue("[s]", "");
    st.out_dict = PyDict_New();
    if (st.in_list == NULL || st.out_dict == NULL)
        goto error;
    if (PyDict_SetItemString(st.main_dict, "In", st.in_list) < 0 ||
        PyDict_SetItemString(st.main_dict, "Out", st.out_dict) < 0 ||
        PyDict_SetItemString(st.main_dict, "_oh", st.out_dict) < 0 ||
        PyDict_SetItemString(st.main_dict, "_ih", st.in_list) < 0)
        goto error;
    PyObject *empty = PyUnicode_FromString("");
    if (empty == NULL)
        goto error;
    int bad = set_main("_", empty) | set_main("__", empty) | set_main("___", empty) |
              set_main("_i", empty) | set_main("_ii", empty) | set_main("_iii", empty);
    Py_DECREF(empty);
    if (bad)
        goto error;
    rc = 0;
error:
    Py_XDECREF(builtins);
    Py_XDECREF(sys);
    Py_XDECREF(astm);
    return rc;
}

int interp_patch_linecache(PyObject *linecache)
{
    PyObject *cache = PyObject_GetAttrString(linecache, "cache");
    if (cache == NULL)
        return -1;
    if (!PyDict_Check(cache)) {
        PyErr_SetString(PyExc_TypeError, "linecache.cache is not a dict");
        Py_DECREF(cache);
        return -1;
    }
    if (st.linecache && cache != st.linecache && PyDict_Update(cache, st.linecache) < 0) {
        Py_DECREF(cache);
        return -1;
    }
    Py_XSETREF(st.linecache, cache);
    return 0;
}

int interp_patch_getpass(PyObject *getpass)
{
    PyObject *gp = st.kmod ? PyObject_GetAttrString(st.kmod, "getpass") : NULL;
    if (gp == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "the kernel module is not ready");
        return -1;
    }
    int rc = PyObject_SetAttrString(getpass, "getpass", gp);
    Py_DECREF(gp);
    return rc;
}

int interp_check_stdlib(char *err, size_t errlen)
{
    char path[4096];
    const char *home = getenv("PYTHONHOME");
    if (home != NULL && home[0] != '\0') {
        const char *colon = strchr(home, ':');
        snprintf(path, sizeof path, "%.*s/lib/python%d.%d/os.py",
                 colon ? (int)(colon - home) : (int)strlen(home), home, PY_MAJOR_VERSION,
                 PY_MINOR_VERSION);
    } else {
        snprintf(path, sizeof path, "%s/os.py", PYROMETER_STDLIB);
    }
    if (access(path, R_OK) == 0)
        return 0;
    snprintf(err, errlen,
             "Python %d.%d's standard library is not where this kernel expects it (%s is "
             "missing): was the interpreter upgraded or removed since pyrometer was built? "
             "Rebuild or reinstall pyrometer",
             PY_MAJOR_VERSION, PY_MINOR_VERSION, path);
    return -1;
}

/* The interpreter was already running (`python -m pyrometer_kernel`): the
 * user gets a fresh __main__ (the launcher's stays behind), and the
 * `pyrometer` module linked into this kernel unless one is imported. GIL
 * held. Returns 0, or -1 with an exception set. */
static int adopt_interpreter(void)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    PyObject *main_mod = NULL, *spec = NULL, *bootstrap = NULL, *ext = NULL, *argv = NULL;
    int rc = -1;

    main_mod = PyModule_New("__main__");
    if (main_mod == NULL)
        goto error;
    PyObject *d = PyModule_GetDict(main_mod);
    if (PyDict_SetItemString(d, "__builtins__", PyEval_GetBuiltins()) < 0 ||
        PyDict_SetItemString(d, "__spec__", Py_None) < 0 ||
        PyDict_SetItemString(d, "__package__", Py_None) < 0 ||
        PyDict_SetItemString(modules, "__main__", main_mod) < 0)
        goto error;
    /* A notebook's sys.argv holds no kernel arguments, as when embedded. */
    argv = Py_BuildValue("[s]", "");
    if (argv == NULL || PySys_SetObject("argv", argv) < 0)
        goto error;
    if (PyDict_GetItemString(modules, "pyrometer") == NULL) {
        bootstrap = PyImport_ImportModule("_frozen_importlib");
        spec = bootstrap ? PyObject_CallMethod(bootstrap, "ModuleSpec", "sO", "pyrometer", Py_None)
                         : NULL;
        PyModuleDef *def = spec ? (PyModuleDef *)PyInit_pyrometer() : NULL;
        ext = def ? PyModule_FromDefAndSpec(def, spec) : NULL;
        if (ext == NULL || PyModule_ExecDef(ext, def) < 0 ||
            PyDict_SetItemString(modules, "pyrometer", ext) < 0)
            goto error;
    }
    rc = 0;
error:
    Py_XDECREF(main_mod);
    Py_XDECREF(spec);
    Py_XDECREF(bootstrap);
    Py_XDECREF(ext);
    Py_XDECREF(argv);
    return rc;
}

/* sys.path[0] is '': a module beside the notebook (the kernel's working
 * directory) imports, and keeps importing after %cd, as in ipykernel.
 * `python -m` put the working directory there as an absolute path; it
 * becomes ''. GIL held. Returns 0, or -1 with an exception set. */
static int path_has_cwd(void)
{
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    if (path == NULL || !PyList_Check(path)) {
        PyErr_SetString(PyExc_RuntimeError, "sys.path is not a list");
        return -1;
    }
    PyObject *empty = PyUnicode_FromString("");
    if (empty == NULL)
        return -1;
    int rc = 0;
    char cwd[4096];
    PyObject *first = PyList_GET_SIZE(path) > 0 ? PyList_GET_ITEM(path, 0) : NULL;
    const char *f = first && PyUnicode_Check(first) ? PyUnicode_AsUTF8(first) : NULL;
    PyErr_Clear();
    if (f != NULL && f[0] == '\0') {
        /* already there */
    } else if (f != NULL && getcwd(cwd, sizeof cwd) != NULL && strcmp(f, cwd) == 0) {
        rc = PyList_SetItem(path, 0, Py_NewRef(empty));
    } else {
        rc = PyList_Insert(path, 0, empty);
    }
    Py_DECREF(empty);
    return rc;
}

int interp_start(publisher *pub, int signal_fd, int hosted, char *err, size_t errlen)
{
    PyStatus status;
    PyConfig config;
    PyGILState_STATE g = PyGILState_UNLOCKED;

    st.pub = pub;
    st.hosted = hosted;
    if (hosted) {
        g = PyGILState_Ensure();
        if (adopt_interpreter() < 0)
            goto py_error;
    } else {
        if (PyImport_AppendInittab("pyrometer", PyInit_pyrometer) < 0) {
            snprintf(err, errlen, "cannot register the pyrometer module");
            return -1;
        }
        PyConfig_InitPythonConfig(&config);
        config.parse_argv = 0;
        config.install_signal_handlers = 1;
        config.buffered_stdio = 0;
        /* sys.executable must be a real python (multiprocessing, subprocesses):
         * the python3.X beside the executable (a venv's bin/, so sys.prefix and
         * site-packages are the venv's), else the one it was built for. */
        char exe[4096], python[4200];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
        if (slash != NULL) {
            *slash = '\0';
            snprintf(python, sizeof python, "%s/python%d.%d", exe, PY_MAJOR_VERSION,
                     PY_MINOR_VERSION);
        }
        if (slash == NULL || access(python, X_OK) != 0)
            snprintf(python, sizeof python, "%s", PYROMETER_PYTHON);
        status = PyConfig_SetBytesString(&config, &config.program_name, python);
        if (!PyStatus_Exception(status)) {
            wchar_t *argv[] = {L""};
            status = PyConfig_SetArgv(&config, 1, argv);
        }
        if (!PyStatus_Exception(status))
            status = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(status)) {
            snprintf(err, errlen, "cannot start Python %s: %s", PY_VERSION,
                     status.err_msg ? status.err_msg : "?");
            return -1;
        }
    }
    if (path_has_cwd() < 0 || install() < 0)
        goto py_error;
    /* _signal, the C module: signal.py would import enum for nothing.
     * Python installs its SIGINT handler only over SIG_DFL; the kernel's
     * own (kthread_catch_sigint) is there instead, so set it here: SIGINT
     * raises KeyboardInterrupt whatever the parent passed on. */
    PyObject *sigmod = PyImport_ImportModule("_signal");
    PyObject *handler = sigmod ? PyObject_GetAttrString(sigmod, "default_int_handler") : NULL;
    PyObject *r = handler ? PyObject_CallMethod(sigmod, "signal", "iO", SIGINT, handler) : NULL;
    Py_XDECREF(handler);
    if (r != NULL && signal_fd >= 0)
        Py_SETREF(r, PyObject_CallMethod(sigmod, "set_wakeup_fd", "i", signal_fd));
    Py_XDECREF(sigmod);
    if (r == NULL) {
        snprintf(err, errlen, "cannot set the SIGINT handler or the signal wakeup fd");
        return -1;
    }
    Py_DECREF(r);
    history_open();
    if (hosted)
        PyGILState_Release(g);
    else
        PyEval_SaveThread();
    return 0;
py_error : {
    PyObject *exc = take_exception();
    PyObject *s = exc ? PyObject_Str(exc) : NULL;
    snprintf(err, errlen, "cannot set up the interpreter: %s",
             s && PyUnicode_AsUTF8(s) ? PyUnicode_AsUTF8(s) : "unknown error");
    Py_XDECREF(s);
    Py_XDECREF(exc);
    return -1;
}
}

void interp_stop(void)
{
    history_close();
    PyGILState_STATE g = PyGILState_Ensure();
    st.pub = NULL; /* from now on, sys.stdout and sys.stderr write to fd 1/2 */
    st.req = NULL;
    ipybridge_clear();
    aio_clear();
    comms_clear();
    shell_clear();
    events_clear();
    Py_CLEAR(st.cell_value);
    Py_CLEAR(st.kmod);
    Py_CLEAR(st.in_list);
    Py_CLEAR(st.out_dict);
    Py_CLEAR(st.linecache);
    for (size_t i = 0; i < UNSTORED_KEPT; i++)
        Py_CLEAR(st.unstored[i]);
    Py_CLEAR(st.stdin_error);
    Py_CLEAR(st.compile);
    Py_CLEAR(st.ast_expr);
    Py_CLEAR(st.ast_interactive);
    if (st.hosted) { /* the host finalizes its interpreter itself */
        PyGILState_Release(g);
        return;
    }
    if (Py_FinalizeEx() < 0) {
        /* buffered data could not be flushed; nothing more to do */
    }
}

json_t *interp_kernel_info(void)
{
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", PY_MAJOR_VERSION, PY_MINOR_VERSION,
             PY_MICRO_VERSION);
    char banner[512];
    snprintf(banner, sizeof banner,
             "Python %s\npyrometer %s - a Jupyter kernel in C with native profilers "
             "(%%prun, %%lprun, %%memit, %%mprun)\n",
             Py_GetVersion(), PYROMETER_VERSION);
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:i}, s:s}, s:s, s:[{s:s, s:s}, "
        "{s:s, s:s}], s:b}",
        "status", "ok", "protocol_version", WIRE_PROTOCOL_VERSION, "implementation", "pyrometer",
        "implementation_version", PYROMETER_VERSION, "language_info", "name", "python", "version",
        version, "mimetype", "text/x-python", "file_extension", ".py", "pygments_lexer", "ipython3",
        "codemirror_mode", "name", "ipython", "version", 3, "nbconvert_exporter", "python",
        "banner", banner, "help_links", "text", "Python Reference", "url",
        "https://docs.python.org/3.11", "text", "pyrometer", "url",
        "https://github.com/pyrometer/pyrometer", "debugger", 0);
}

/* ---- running a cell --------------------------------------------------------- */

/* Registers src under fname in linecache so tracebacks and
 * inspect.getsource() see the cell. Returns 0 or -1. */
static int register_source(PyObject *fname, const char *src)
{
    PyObject *text = PyUnicode_FromString(src);
    if (text == NULL)
        return -1;
    PyObject *lines = PyObject_CallMethod(text, "splitlines", "(O)", Py_True);
    Py_DECREF(text);
    if (lines == NULL)
        return -1;
    /* fname is both the key and the entry's name: one string */
    PyObject *entry = Py_BuildValue("(nOOO)", (Py_ssize_t)strlen(src), Py_None, lines, fname);
    Py_DECREF(lines);
    int rc = entry ? PyDict_SetItem(st.linecache, fname, entry) : -1;
    Py_XDECREF(entry);
    return rc;
}

/* Remembers fname, the source name of a cell not stored in history, and
 * drops from linecache the one UNSTORED_KEPT such cells before it. */
static void forget_old_unstored(PyObject *fname)
{
    PyObject **slot = &st.unstored[st.unstored_next];
    st.unstored_next = (st.unstored_next + 1) % UNSTORED_KEPT;
    if (*slot != NULL && PyDict_DelItem(st.linecache, *slot) < 0)
        PyErr_Clear(); /* already gone (linecache.clearcache) */
    Py_INCREF(fname);
    Py_XSETREF(*slot, fname);
}

/* Compiles tree (an AST node) in mode, with top-level await allowed.
 * Returns a new code object, or NULL with an exception set. */
static PyObject *compile_tree(PyObject *tree, PyObject *fname, const char *mode)
{
    return PyObject_CallFunction(st.compile, "OOsi", tree, fname, mode, PyCF_ALLOW_TOP_LEVEL_AWAIT);
}

/* Runs code in the user namespace; a coroutine (the cell awaits) runs on the
 * kernel's event loop. Returns 0, or -1 with an exception set. */
static int run_code(PyObject *code)
{
    PyObject *res = PyEval_EvalCode(code, st.main_dict, st.main_dict);
    if (res != NULL) {
        int is_coro = aio_is_coroutine_code(code);
        if (is_coro < 0)
            Py_CLEAR(res);
        else if (is_coro)
            Py_SETREF(res, aio_run(res, code));
    }
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* Returns a new statement node `__pyrometer__.displayhook(<last's value>)`
 * at last's position, or NULL with an exception set. */
static PyObject *display_call(PyObject *last)
{
    PyObject *astm = NULL, *value = NULL, *loc = NULL, *load = NULL, *name = NULL;
    PyObject *attr = NULL, *call = NULL, *stmt = NULL;
    static const char *fields[] = {"lineno", "col_offset", "end_lineno", "end_col_offset"};

    astm = PyImport_ImportModule("_ast");
    value = astm ? PyObject_GetAttrString(last, "value") : NULL;
    loc = value ? PyDict_New() : NULL;
    if (loc == NULL)
        goto error;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        PyObject *v = PyObject_GetAttrString(value, fields[i]);
        int rc = v ? PyDict_SetItemString(loc, fields[i], v) : -1;
        Py_XDECREF(v);
        if (rc < 0)
            goto error;
    }
    load = PyObject_CallMethod(astm, "Load", NULL);
    PyObject *name_type = load ? PyObject_GetAttrString(astm, "Name") : NULL;
    if (name_type == NULL)
        goto error;
    PyObject *args = Py_BuildValue("(sO)", "__pyrometer__", load);
    name = args ? PyObject_Call(name_type, args, loc) : NULL;
    Py_XDECREF(args);
    Py_DECREF(name_type);
    PyObject *attr_type = name ? PyObject_GetAttrString(astm, "Attribute") : NULL;
    if (attr_type == NULL)
        goto error;
    args = Py_BuildValue("(OsO)", name, "displayhook", load);
    attr = args ? PyObject_Call(attr_type, args, loc) : NULL;
    Py_XDECREF(args);
    Py_DECREF(attr_type);
    PyObject *call_type = attr ? PyObject_GetAttrString(astm, "Call") : NULL;
    if (call_type == NULL)
        goto error;
    args = Py_BuildValue("(O[O][])", attr, value);
    call = args ? PyObject_Call(call_type, args, loc) : NULL;
    Py_XDECREF(args);
    Py_DECREF(call_type);
    if (call == NULL)
        goto error;
    args = Py_BuildValue("(O)", call);
    stmt = args ? PyObject_Call(st.ast_expr, args, loc) : NULL;
    Py_XDECREF(args);
error:
    Py_XDECREF(astm);
    Py_XDECREF(value);
    Py_XDECREF(loc);
    Py_XDECREF(load);
    Py_XDECREF(name);
    Py_XDECREF(attr);
    Py_XDECREF(call);
    return stmt;
}

/* 1 when the statement node last, the cell's last, is followed in src by
 * a semicolon (comments and blank lines aside): IPython's sign that the
 * cell's value is not shown (`plt.plot(xs);`). 0 if not, -1 with an
 * exception set. */
static int ends_with_semicolon(const char *src, PyObject *last)
{
    PyObject *ln = PyObject_GetAttrString(last, "end_lineno");
    PyObject *col = ln ? PyObject_GetAttrString(last, "end_col_offset") : NULL;
    long line = ln ? PyLong_AsLong(ln) : -1, off = col ? PyLong_AsLong(col) : -1;
    Py_XDECREF(ln);
    Py_XDECREF(col);
    if (PyErr_Occurred())
        return -1;
    const char *p = src;
    for (long i = 1; i < line && p; i++) { /* to the start of the node's last line */
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    if (p == NULL || off < 0 || (size_t)off > strcspn(p, "\n"))
        return 0;             /* positions that do not fit the text: show the value */
    for (p += off; *p; p++) { /* end_col_offset counts UTF-8 bytes */
        if (*p == ';')
            return 1;
        if (*p == '#') { /* a comment: on to its line's end */
            p += strcspn(p, "\n");
            if (*p == '\0')
                break;
        } else if (!strchr(" \t\f\r\n\\", *p)) {
            return 0;
        }
    }
    return 0;
}

/* Compiles src (already transformed) as a module and runs it in the user
 * namespace; when display_last is set and the last statement is an
 * expression, it runs in 'single' mode so its value reaches the display
 * hook. A cell that awaits anywhere runs whole as one coroutine, as IPython
 * runs it (tasks it starts before its first await see the running loop);
 * its last expression is then shown by a call to the display hook.
 * Returns 0, or -1 with an exception set. */
static int run_source(const char *src, PyObject *fname, int display_last)
{
    PyObject *ast_mod = NULL, *body = NULL, *last = NULL, *interactive = NULL;
    PyObject *code = NULL, *code_last = NULL;
    int rc = -1;
    PyCompilerFlags flags = {PyCF_ONLY_AST, PY_MINOR_VERSION};

    ast_mod = Py_CompileStringObject(src, fname, Py_file_input, &flags, -1);
    if (ast_mod == NULL)
        goto error;
    body = PyObject_GetAttrString(ast_mod, "body");
    if (body == NULL || !PyList_Check(body))
        goto error;
    Py_ssize_t n = PyList_GET_SIZE(body);
    if (display_last && n > 0) {
        int is_expr = PyObject_IsInstance(PyList_GET_ITEM(body, n - 1), st.ast_expr);
        if (is_expr < 0)
            goto error;
        if (is_expr) {
            is_expr = ends_with_semicolon(src, PyList_GET_ITEM(body, n - 1));
            if (is_expr < 0)
                goto error;
            is_expr = !is_expr;
        }
        if (is_expr) {
            last = Py_NewRef(PyList_GET_ITEM(body, n - 1));
            if (PyList_SetSlice(body, n - 1, n, NULL) < 0)
                goto error;
        }
    }
    code = compile_tree(ast_mod, fname, "exec");
    if (code == NULL)
        goto error;
    if (last) {
        interactive = PyObject_CallFunction(st.ast_interactive, "([O])", last);
        code_last = interactive ? compile_tree(interactive, fname, "single") : NULL;
        if (code_last == NULL)
            goto error;
        int coro = aio_is_coroutine_code(code), coro_last = aio_is_coroutine_code(code_last);
        if (coro < 0 || coro_last < 0)
            goto error;
        if (coro || coro_last) { /* one coroutine, the display call its end */
            PyObject *stmt = display_call(last);
            if (stmt == NULL || PyList_Append(body, stmt) < 0) {
                Py_XDECREF(stmt);
                goto error;
            }
            Py_DECREF(stmt);
            Py_CLEAR(code_last);
            Py_SETREF(code, compile_tree(ast_mod, fname, "exec"));
            if (code == NULL)
                goto error;
        }
    }
    if (run_code(code) < 0 || (code_last && run_code(code_last) < 0))
        goto error;
    rc = 0;
error:
    Py_XDECREF(ast_mod);
    Py_XDECREF(body);
    Py_XDECREF(last);
    Py_XDECREF(interactive);
    Py_XDECREF(code);
    Py_XDECREF(code_last);
    return rc;
}

/* Evaluates the JSON string expr in the user namespace. Its whole length
 * reaches Python, so a NUL in it gets Python's own error rather than a
 * truncated expression. Returns a new reference, or NULL with an exception
 * set. */
static PyObject *eval_string(json_t *expr)
{
    PyObject *code = NULL, *res = NULL;
    PyObject *text =
        PyUnicode_DecodeUTF8(json_string_value(expr), (Py_ssize_t)json_string_length(expr), NULL);
    if (text == NULL)
        return NULL;
    code = PyObject_CallFunction(st.compile, "Oss", text, "<string>", "eval");
    if (code != NULL)
        res = PyEval_EvalCode(code, st.main_dict, st.main_dict);
    Py_DECREF(text);
    Py_XDECREF(code);
    return res;
}

/* Python's keywords: never automagic. */
static const char *const keywords[] = {
    "False", "None",     "True",  "and",    "as",   "assert", "async",  "await",    "break",
    "class", "continue", "def",   "del",    "elif", "else",   "except", "finally",  "for",
    "from",  "global",   "if",    "import", "in",   "is",     "lambda", "nonlocal", "not",
    "or",    "pass",     "raise", "return", "try",  "while",  "with",   "yield",
};

/* transform_magic_fn for automagic, as IPython decides it: name is a line
 * magic (the kernel's own, or IPython's where IPython can be imported), and
 * no variable, builtin or keyword of that name shadows it.
 * GIL held; never raises. */
static int automagic_ok(const char *name, size_t len, void *arg)
{
    char buf[64];
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, name, len);
    buf[len] = '\0';
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (strcmp(keywords[i], buf) == 0)
            return 0;
    if (PyDict_GetItemString(st.main_dict, buf) != NULL)
        return 0;
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    if (builtins != NULL && PyDict_GetItemString(builtins, buf) != NULL)
        return 0;
    PyObject *names = magics_names(0), *key = PyUnicode_FromString(buf);
    int found = names && key ? PySequence_Contains(names, key) : -1;
    Py_XDECREF(names);
    Py_XDECREF(key);
    if (found < 0)
        PyErr_Clear();
    return found == 1 || (found == 0 && ipybridge_automagic(buf));
}

/* Evaluates user_expressions: {name: {status, data, metadata} | error}. */
static json_t *user_expressions(json_t *exprs)
{
    json_t *out = json_object();
    const char *name;
    json_t *val;
    json_object_foreach(exprs, name, val)
    {
        json_t *r = NULL;
        if (!json_is_string(val)) {
            r = json_pack("{s:s, s:s, s:s, s:[]}", "status", "error", "ename", "TypeError",
                          "evalue", "user expression must be a string", "traceback");
        } else {
            PyObject *v = eval_string(val);
            PyObject *md = NULL, *data = v ? interp_format(v, &md) : NULL;
            json_t *jd = data ? interp_to_json(data) : NULL;
            json_t *jm = jd ? interp_to_json(md) : NULL;
            Py_XDECREF(v);
            Py_XDECREF(data);
            Py_XDECREF(md);
            if (jm) {
                r = json_pack("{s:s, s:o, s:o}", "status", "ok", "data", jd, "metadata", jm);
            } else {
                json_decref(jd);
                r = error_content();
                json_object_set_new(r, "status", json_string("error"));
            }
        }
        json_object_set_new(out, name, r);
    }
    return out;
}

static void remember_input(const char *code)
{
    PyObject *s = PyUnicode_FromString(code);
    if (s == NULL || PyList_Append(st.in_list, s) < 0) {
        Py_XDECREF(s);
        PyErr_Clear();
        return;
    }
    PyObject *i1 = PyDict_GetItemString(st.main_dict, "_i");
    PyObject *i2 = PyDict_GetItemString(st.main_dict, "_ii");
    Py_XINCREF(i1);
    Py_XINCREF(i2);
    if (i2)
        set_main("_iii", i2);
    if (i1)
        set_main("_ii", i1);
    set_main("_i", s);
    char name[32];
    snprintf(name, sizeof name, "_i%ld", st.execution_count);
    set_main(name, s);
    Py_XDECREF(i1);
    Py_XDECREF(i2);
    Py_DECREF(s);
    PyErr_Clear();
}

/* A cell whose text holds a NUL cannot be compiled: sets Python's own
 * error for it (compile() of the whole text; ValueError on 3.11,
 * SyntaxError from 3.12) and returns -1. */
static int reject_nul(json_t *jcode, PyObject *fname)
{
    PyObject *text = PyUnicode_DecodeUTF8(json_string_value(jcode),
                                          (Py_ssize_t)json_string_length(jcode), "replace");
    PyObject *r = text ? PyObject_CallFunction(st.compile, "OOs", text, fname, "exec") : NULL;
    Py_XDECREF(text);
    if (r != NULL) { /* a Python that accepts NULs: still not a cell we can run */
        Py_DECREF(r);
        PyErr_SetString(PyExc_SyntaxError, "source code cannot contain null bytes");
    }
    return -1;
}

json_t *interp_execute(publisher *pub, const wire_msg *req, int *failed)
{
    json_t *c = req->content;
    json_t *jcode = json_object_get(c, "code");
    const char *code = json_string_value(jcode);
    /* a NUL inside: the text is not what C sees up to it */
    int has_nul = code != NULL && strlen(code) != json_string_length(jcode);
    int silent = json_is_true(json_object_get(c, "silent"));
    json_t *sh = json_object_get(c, "store_history");
    int store_history = silent ? 0 : (sh == NULL || json_is_true(sh));
    json_t *as = json_object_get(c, "allow_stdin");
    int allow_stdin = as == NULL || json_is_true(as);
    json_t *exprs = json_object_get(c, "user_expressions");
    json_t *reply = NULL;
    char filename[64];

    *failed = 0;
    if (code == NULL)
        code = "";
    PyGILState_STATE g = PyGILState_Ensure();
    /* An interrupt that arrived while idle must not hit this cell. */
    if (PyErr_CheckSignals() < 0)
        PyErr_Clear();
    (void)
        exiter_take_request(); /* an exit() outside any cell (a comm callback) is not this cell's */
    st.pub = pub;
    st.req = req;
    st.silent = silent;
    st.store_history = store_history;
    st.allow_stdin = allow_stdin;
    history_catch_up(); /* the cells before this one are on disk, or soon */
    if (store_history) {
        st.execution_count++;
        history_store_input(st.execution_count, code);
    }
    st.serial++;
    if (store_history)
        snprintf(filename, sizeof filename, "<cell-%ld>", st.execution_count);
    else
        snprintf(filename, sizeof filename, "<cell-%ld.%ld>", st.execution_count, st.serial);
    if (!silent)
        pub->announce(pub->self, "execute_input",
                      json_pack("{s:o, s:I}", "code",
                                json_is_string(jcode) ? json_incref(jcode) : json_string(""),
                                "execution_count", (json_int_t)st.execution_count),
                      req->header);
    if (store_history)
        remember_input(code);

    char *src = NULL, terr[256];
    int rc = -1;
    /* Pasted indented code runs dedented; linecache holds what ran, so a
     * traceback's columns match its lines. */
    char *dedented = transform_dedent(code);
    const char *text = dedented ? dedented : code;
    /* Extensions' callbacks (IPython fires none for a blank cell). */
    const char *cell_id = json_string_value(json_object_get(req->metadata, "cellId"));
    int blank = code[strspn(code, " \t\r\n\f\v")] == '\0';
    if (!blank)
        events_pre_cell(code, silent, store_history, cell_id);
    /* The cell's name in linecache and in its code: one string for both. */
    PyObject *fname = PyUnicode_FromString(filename); /* NULL: its error is the cell's */
    if (fname != NULL) {
        if (register_source(fname, text) < 0)
            PyErr_Clear();
        else if (!store_history)
            forget_old_unstored(fname);
        src = has_nul ? NULL : transform_cell_auto(text, automagic_ok, NULL, terr, sizeof terr);
        if (has_nul) {
            reject_nul(jcode, fname);
        } else if (src == NULL) {
            PyErr_SetString(PyExc_SyntaxError, terr);
        } else {
            rc = run_source(src, fname, !silent);
            free(src);
        }
        Py_DECREF(fname);
    }
    free(dedented);
    json_t *err = NULL;
    PyObject *exc = rc < 0 ? take_exception() : NULL;
    if (exc != NULL)
        set_last_exception(exc);
    if (!blank)
        events_post_cell(st.execution_count, st.cell_value, exc);
    Py_CLEAR(st.cell_value);
    if (rc < 0)
        err = error_content_of(exc); /* steals exc */
    stdmagics_after_cell();
    pub->sync(pub->self);
    if (err) {
        *failed = 1;
        if (!silent)
            pub->iopub(pub->self, "error", json_deep_copy(err), req->header);
        ipybridge_cell_failed(!silent); /* %debug's traceback; %pdb on: the debugger */
        reply = err;
        json_object_set_new(reply, "status", json_string("error"));
        json_object_set_new(reply, "execution_count", json_integer(st.execution_count));
        json_object_set_new(reply, "user_expressions", json_object());
    } else {
        reply = json_pack("{s:s, s:I, s:[], s:o}", "status", "ok", "execution_count",
                          (json_int_t)st.execution_count, "payload", "user_expressions",
                          json_is_object(exprs) ? user_expressions(exprs) : json_object());
        json_t *payload = session_take_payload();
        if (payload)
            json_object_set_new(reply, "payload", payload);
    }
    if (json_object_size(exprs) > 0)
        pub->sync(pub->self); /* what user_expressions wrote to fd 1/2 */
    st.req = NULL;
    PyGILState_Release(g);
    return reply;
}

/* ---- is_complete ---------------------------------------------------------- */

/* {"status": "incomplete", "indent": ind spaces (at most 127)}. */
static json_t *incomplete_reply(size_t ind)
{
    char indent[128];
    if (ind >= sizeof indent)
        ind = sizeof indent - 1;
    memset(indent, ' ', ind);
    indent[ind] = '\0';
    return json_pack("{s:s, s:s}", "status", "incomplete", "indent", indent);
}

/* IPython's rule for a cell magic: it ends with a blank line (a console
 * goes on reading the body after `%%time` and Enter). NULL when cell does
 * not start with a cell magic. */
static json_t *cell_magic_is_complete(const char *cell)
{
    if (strncmp(cell, "%%", 2) != 0)
        return NULL;
    size_t n = strlen(cell);
    if (n > 0 && cell[n - 1] == '\n') /* its last line is the one this newline ends */
        n--;
    size_t start = n;
    while (start > 0 && cell[start - 1] != '\n')
        start--;
    int blank = 1;
    for (size_t i = start; i < n && blank; i++)
        blank = strchr(" \t\r\f\v", cell[i]) != NULL;
    if (blank)
        return json_pack("{s:s}", "status", "complete");
    size_t ind = 0;
    for (size_t i = start; i < n && (cell[i] == ' ' || cell[i] == '\t'); i++)
        ind = cell[i] == '\t' ? (ind / 8 + 1) * 8 : ind + 1;
    return incomplete_reply(ind);
}

json_t *interp_is_complete(const char *code)
{
    PyGILState_STATE g = PyGILState_Ensure();
    json_t *reply = NULL;
    char terr[256];
    char *dedented = transform_dedent(code);
    reply = cell_magic_is_complete(dedented ? dedented : code);
    if (reply) {
        free(dedented);
        goto done;
    }
    char *src =
        transform_cell_auto(dedented ? dedented : code, automagic_ok, NULL, terr, sizeof terr);
    free(dedented);
    if (src == NULL) {
        reply = json_pack("{s:s}", "status", "invalid");
        goto done;
    }
    PyObject *codeop = PyImport_ImportModule("codeop");
    PyObject *r =
        codeop ? PyObject_CallMethod(codeop, "compile_command", "ss", src, "<input>") : NULL;
    Py_XDECREF(codeop);
    if (r == NULL) {
        PyErr_Clear();
        reply = json_pack("{s:s}", "status", "invalid");
    } else if (r == Py_None) {
        /* Incomplete: indent like the last non-blank line, deeper after ':'. */
        const char *end = code + strlen(code), *ls = end;
        while (ls > code && (ls[-1] == '\n' || ls[-1] == ' ' || ls[-1] == '\t'))
            ls--;
        const char *last_end = ls;
        while (ls > code && ls[-1] != '\n')
            ls--;
        size_t ind = 0;
        while (ls + ind < last_end && ls[ind] == ' ')
            ind++;
        if (last_end > code && last_end[-1] == ':')
            ind += 4;
        reply = incomplete_reply(ind);
    } else {
        /* codeop accepts "def f():\n  pass" as complete only after a blank
         * line; a trailing block without one is still open. */
        reply = json_pack("{s:s}", "status", "complete");
    }
    Py_XDECREF(r);
    free(src);
done:
    PyGILState_Release(g);
    return reply;
}
