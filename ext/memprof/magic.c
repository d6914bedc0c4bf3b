/* memprof/magic.c - the memory magics: %memit / %%memit, %mprun and %%mprof.
 *
 * Declares their options (options.c parses them), evaluates -f targets in
 * the user namespace, runs the statement under memprof/engine.c's hooks, writes the
 * -T / --dat files and builds %memit's result and text. The %mprun tables
 * and the %%mprof chart are memprof/render.c's. Owns no global state:
 * memprof/engine.c's session is the single "a memory magic is running" flag.
 */
#include "memprof/memprof.h"
#include "memprof/render.h"
#include "options.h"
#include "report.h"
#include "targets.h"

#include <structmember.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)

/* The most -f functions one %mprun or %%mprof takes. */
#define MAX_TARGETS 32

#define SECONDS_BAD "expected a number of seconds, got '%s'"

/* ---- running code ------------------------------------------------------------ */

static PyObject *compile_src(const char *src, const char *filename)
{
    return Py_CompileString(src, filename, Py_file_input);
}

/* Runs code with ns as globals and locals. Like exec(), it gives ns a
 * __builtins__ if it has none (imports need one), but takes it out again
 * afterwards, so that the namespace is left as it was. */
static PyObject *run_code(PyObject *code, PyObject *ns)
{
    PyObject *builtins = NULL, *res;
    int added = 0;
    if (PyDict_GetItemString(ns, "__builtins__") == NULL) {
        builtins = PyEval_GetBuiltins(); /* borrowed */
        if (builtins == NULL || PyDict_SetItemString(ns, "__builtins__", builtins) < 0)
            return NULL;
        added = 1;
    }
    res = PyEval_EvalCode(code, ns, ns);
    if (added) {
        PyObject *exc, *val, *tb;
        PyErr_Fetch(&exc, &val, &tb);
        PyObject *cur = PyDict_GetItemString(ns, "__builtins__");
        if (cur == builtins && PyDict_DelItemString(ns, "__builtins__") < 0)
            PyErr_Clear();
        PyErr_Restore(exc, val, tb);
    }
    return res;
}

/* Calls display(bundle) with any pending exception saved and restored. */
static int show(PyObject *display, PyObject *bundle)
{
    PyObject *exc, *val, *tb;
    PyErr_Fetch(&exc, &val, &tb);
    PyObject *r = PyObject_CallOneArg(display, bundle);
    int rc = r == NULL ? -1 : 0;
    Py_XDECREF(r);
    if (exc != NULL) {
        /* The statement's own error wins over a display failure. */
        if (rc < 0)
            PyErr_Clear();
        PyErr_Restore(exc, val, tb);
    }
    return rc;
}

/* ---- the MemitResult type ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *mem_usage;        /* list of float: peak RSS of each run, MiB */
    PyObject *baseline;         /* float MiB */
    PyObject *peak;             /* float MiB: max(mem_usage) */
    PyObject *increment;        /* float MiB: peak - baseline */
    PyObject *heap_peak;        /* int bytes: allocator peak above baseline */
    PyObject *heap_net;         /* int bytes: allocator bytes retained */
    PyObject *repeat;           /* int */
    PyObject *timeout;          /* float or None */
    PyObject *interval;         /* float */
    PyObject *include_children; /* bool */
} MemitResult;

static PyMemberDef memit_members[] = {
    {"mem_usage", T_OBJECT_EX, offsetof(MemitResult, mem_usage), READONLY,
     "peak RSS of each run, MiB"},
    {"baseline", T_OBJECT_EX, offsetof(MemitResult, baseline), READONLY, "RSS before, MiB"},
    {"peak", T_OBJECT_EX, offsetof(MemitResult, peak), READONLY, "peak RSS, MiB"},
    {"increment", T_OBJECT_EX, offsetof(MemitResult, increment), READONLY,
     "peak RSS minus baseline, MiB"},
    {"heap_peak", T_OBJECT_EX, offsetof(MemitResult, heap_peak), READONLY,
     "peak of Python-allocator and NumPy bytes above the baseline, bytes"},
    {"heap_net", T_OBJECT_EX, offsetof(MemitResult, heap_net), READONLY,
     "bytes allocated by the statement and still held afterwards"},
    {"repeat", T_OBJECT_EX, offsetof(MemitResult, repeat), READONLY, "number of runs"},
    {"timeout", T_OBJECT_EX, offsetof(MemitResult, timeout), READONLY, "seconds, or None"},
    {"interval", T_OBJECT_EX, offsetof(MemitResult, interval), READONLY,
     "sampling interval, seconds"},
    {"include_children", T_OBJECT_EX, offsetof(MemitResult, include_children), READONLY,
     "children's RSS included"},
    {NULL, 0, 0, 0, NULL},
};

#define MEMIT_NFIELDS 10

static PyObject **memit_field(MemitResult *self, int i)
{
    return (PyObject **)((char *)self + memit_members[i].offset);
}

static int memit_traverse(MemitResult *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (int i = 0; i < MEMIT_NFIELDS; i++)
        Py_VISIT(*memit_field(self, i));
    return 0;
}

static int memit_clear(MemitResult *self)
{
    for (int i = 0; i < MEMIT_NFIELDS; i++)
        Py_CLEAR(*memit_field(self, i));
    return 0;
}

static void memit_dealloc(MemitResult *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    memit_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The two lines %memit prints. */
static void memit_lines(report_buf *b, double peak, double inc, long long heap_peak,
                        long long heap_net)
{
    char a[48], c[48], d[48], e[48];
    report_fmt_mib(a, sizeof a, peak, 2, 0);
    report_fmt_mib(c, sizeof c, inc, 2, 0);
    report_fmt_mib(d, sizeof d, heap_peak / MIB, 2, 0);
    report_fmt_mib(e, sizeof e, heap_net / MIB, 2, 1);
    report_buf_printf(b, "peak memory: %s, increment: %s\n", a, c);
    report_buf_printf(b, "heap peak: %s above baseline, net retained: %s\n", d, e);
}

static PyObject *memit_text(MemitResult *self)
{
    report_buf b = REPORT_BUF_INIT;
    double peak = PyFloat_AsDouble(self->peak), inc = PyFloat_AsDouble(self->increment);
    long long hp = PyLong_AsLongLong(self->heap_peak), hn = PyLong_AsLongLong(self->heap_net);
    if (PyErr_Occurred())
        return NULL;
    memit_lines(&b, peak, inc, hp, hn);
    if (b.len > 0)
        b.data[--b.len] = '\0';
    PyObject *s = report_buf_to_str(&b);
    report_buf_free(&b);
    return s;
}

static PyObject *memit_repr(MemitResult *self)
{
    PyObject *s = memit_text(self);
    if (s == NULL)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("<MemitResult : %U>", s);
    Py_DECREF(s);
    return r;
}

static PyType_Slot memit_slots[] = {
    {Py_tp_dealloc, memit_dealloc},
    {Py_tp_traverse, memit_traverse},
    {Py_tp_clear, memit_clear},
    {Py_tp_str, memit_text},
    {Py_tp_repr, memit_repr},
    {Py_tp_members, memit_members},
    {Py_tp_doc, "Result of %memit -o: RSS figures in MiB like memory_profiler's MemitResult, "
                "plus the allocator's heap_peak and heap_net in bytes."},
    {0, NULL},
};

static PyType_Spec memit_spec = {
    .name = "pyrometer.MemitResult",
    .basicsize = sizeof(MemitResult),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = memit_slots,
};

/* ---- %memit ------------------------------------------------------------------------- */

static const char memit_usage[] =
    "Usage: %memit [-r N] [-t TIMEOUT] [-i INTERVAL] [-c] [-o] [-q] statement\n"
    "       %%memit [options] [setup statement]  (the cell body is measured)";

enum { MO_R, MO_T, MO_I, MO_C, MO_O, MO_Q };
static const options_spec memit_opts[] = {
    [MO_R] = {'r', NULL, OPTIONS_INT, 0, 1.0, .meta = "N",
              .help = "run the statement N times and report the largest peak (default 1)"},
    [MO_T] = {'t', NULL, OPTIONS_FLOAT, 0, 0.0, .bad = SECONDS_BAD, .meta = "TIMEOUT",
              .help = "stop sampling RSS after TIMEOUT seconds"},
    [MO_I] = {'i', NULL, OPTIONS_FLOAT, 0, 0.0, .bad = SECONDS_BAD, .meta = "INTERVAL",
              .help = "sample RSS every INTERVAL seconds (default 0.01)"},
    [MO_C] = {'c', NULL, OPTIONS_FLAG, .help = "add the RSS of child processes"},
    [MO_O] = {'o', NULL, OPTIONS_FLAG,
              .help = "return a pyrometer.MemitResult (memory_profiler's fields, plus heap_peak "
                      "and heap_net)"},
    [MO_Q] = {'q', NULL, OPTIONS_FLAG, .help = "print nothing (with -o)"},
};
static const options_magic memit_magic_spec = {
    "%memit",
    memit_usage,
    memit_opts,
    sizeof memit_opts / sizeof memit_opts[0],
    0,
    .summary = "Measure a statement's peak memory: RSS peak and increment, and the heap.",
    .details = "The exact RSS peak comes from the kernel's high-water mark (VmHWM), reset\n"
               "before the run; allocator hooks add the Python heap's peak and net change\n"
               "and NumPy's array buffers. In %%memit the line is setup, run first and not\n"
               "measured.",
    .example = "  %memit x = list(range(10**6))\n"
               "  r = %memit -o -q bytearray(50 * 2**20)",
};

static const char nested_msg[] =
    "another memory magic is already running (%%memit, %%mprun and %%%%mprof cannot be "
    "nested); run them one after the other";

/* What every memory magic does first: unpacks (line, cell, ns, display),
 * refuses to nest, refuses a line for a cell-only magic and parses the
 * line's options into *o (the caller clears it either way). Returns the line
 * as UTF-8 (owned by args), or NULL with an exception set. */
static const char *magic_start(PyObject *module, PyObject *args, const options_magic *spec,
                               int cell_only, PyObject **cell, PyObject **ns, PyObject **display,
                               options_parsed *o)
{
    const char *name = spec->name + strspn(spec->name, "%");
    char fmt[32];
    PyObject *line;

    snprintf(fmt, sizeof fmt, "UOOO:%s", name);
    if (!PyArg_ParseTuple(args, fmt, &line, cell, ns, display))
        return NULL;
    if (!PyDict_Check(*ns)) {
        PyErr_Format(PyExc_TypeError, "%s: the namespace must be a dict", name);
        return NULL;
    }
    if (memprof_busy()) {
        options_usage_error(module, spec, nested_msg);
        return NULL;
    }
    if (cell_only && *cell == Py_None) {
        PyObject *cls = PyObject_GetAttrString(module, "UsageError");
        if (cls != NULL)
            PyErr_Format(cls,
                         "%%%%%s is a cell magic: put %%%%%s on the first line of a cell and the "
                         "code to record below it\n%s",
                         name, name, spec->usage);
        Py_XDECREF(cls);
        return NULL;
    }
    const char *cline = PyUnicode_AsUTF8(line);
    if (cline == NULL || options_parse(module, spec, cline, o) < 0)
        return NULL;
    return cline;
}

/* Measures one run. Fills *peak_rss (bytes) and *heap_peak (bytes above the
 * heap at the start of the run). Returns the statement's result or NULL. */
static PyObject *memit_run(PyObject *code, PyObject *ns, int children, double timeout,
                           double interval, int64_t *peak_rss, int64_t *heap_peak)
{
    memprof_counters c0, c1;
    memprof_sampler *sampler = NULL;
    PyObject *res;

    memprof_get(&c0);
    memprof_reset_peak();
    /* Exact peak from the kernel's high-water mark when we may reset it; a
     * sampling thread for children, timeouts, or locked-down kernels. */
    int use_hwm = !children && timeout <= 0 && memprof_hwm_reset() == 0;
    if (!use_hwm) {
        sampler = memprof_sampler_start(interval, children, 0, timeout);
        if (sampler == NULL)
            return NULL;
    }
    res = run_code(code, ns);
    if (sampler != NULL) {
        int64_t hp;
        memprof_sampler_stop(sampler, peak_rss, &hp, NULL, NULL);
        *heap_peak = hp - c0.live;
    } else {
        int64_t hwm = memprof_hwm(), now = memprof_rss();
        if (hwm >= 0)
            hwm -= memprof_overhead();
        *peak_rss = hwm > now ? hwm : now;
        memprof_get(&c1);
        *heap_peak = c1.peak - c0.live;
    }
    return res;
}

static PyObject *memit_magic(PyObject *module, PyObject *args)
{
    PyObject *cell, *ns, *display;
    PyObject *setup_code = NULL, *code = NULL, *res = NULL, *result = NULL, *usage_list = NULL;
    PyObject *bundle = NULL, *ret = NULL;
    options_parsed o = OPTIONS_PARSED_INIT;
    long repeat;
    double timeout, interval;
    int64_t baseline, peak = -1, heap_peak = 0;
    memprof_counters cend;
    int started = 0, runs = 0, failed = 0, np_tracked = 0;
    report_buf text = REPORT_BUF_INIT, html = REPORT_BUF_INIT;

    if (magic_start(module, args, &memit_magic_spec, 0, &cell, &ns, &display, &o) == NULL)
        goto done;
    repeat = options_long(&o, MO_R, 1);
    timeout = options_double(&o, MO_T, 0);
    interval = options_double(&o, MO_I, 0.01);
    int children = options_given(&o, MO_C), want = options_given(&o, MO_O),
        quiet = options_given(&o, MO_Q);

    const char *stmt = o.rest, *setup = NULL;
    if (cell != Py_None) {
        setup = o.rest;
        stmt = PyUnicode_AsUTF8(cell);
        if (stmt == NULL)
            goto done;
    }
    const char *q = stmt;
    while (Py_ISSPACE(*q))
        q++;
    if (*q == '\0') {
        options_usage_error(module, &memit_magic_spec,
                            "give a statement to measure, e.g. %%memit "
                            "x = list(range(10**6))");
        goto done;
    }
    if (setup != NULL) {
        setup_code = compile_src(setup, "<memit-setup>");
        if (setup_code == NULL)
            goto done;
    }
    code = compile_src(stmt, "<memit>");
    if (code == NULL)
        goto done;
    if (setup_code != NULL) {
        res = run_code(setup_code, ns);
        if (res == NULL)
            goto done;
        Py_CLEAR(res);
    }

    baseline = memprof_rss();
    if (children)
        baseline += memprof_children_rss();
    if (memprof_start() < 0)
        goto done;
    started = 1;
    usage_list = PyList_New(0);
    if (usage_list == NULL)
        goto done;
    for (long r = 0; r < repeat; r++) {
        int64_t run_peak = -1, run_heap = 0;
        res = memit_run(code, ns, children, timeout, interval, &run_peak, &run_heap);
        runs++;
        if (run_peak > peak)
            peak = run_peak;
        if (run_heap > heap_peak)
            heap_peak = run_heap;
        PyObject *exc, *val, *tb;
        PyErr_Fetch(&exc, &val, &tb);
        PyObject *f = PyFloat_FromDouble(run_peak / MIB);
        int rc = f == NULL ? -1 : PyList_Append(usage_list, f);
        Py_XDECREF(f);
        if (rc < 0) {
            Py_XDECREF(exc);
            Py_XDECREF(val);
            Py_XDECREF(tb);
            Py_CLEAR(res);
            goto done;
        }
        PyErr_Restore(exc, val, tb);
        if (res == NULL) {
            failed = 1;
            break;
        }
        Py_CLEAR(res);
    }
    memprof_get(&cend);
    np_tracked = memprof_numpy_tracked();
    memprof_stop();
    started = 0;

    {
        PyObject *exc, *val, *tb;
        PyErr_Fetch(&exc, &val, &tb);
        PyObject *type = PyObject_GetAttrString(module, "MemitResult");
        MemitResult *m = type ? PyObject_GC_New(MemitResult, (PyTypeObject *)type) : NULL;
        Py_XDECREF(type);
        if (m != NULL) {
            for (int i = 0; i < MEMIT_NFIELDS; i++)
                *memit_field(m, i) = NULL;
            m->mem_usage = Py_NewRef(usage_list);
            m->baseline = PyFloat_FromDouble(baseline / MIB);
            m->peak = PyFloat_FromDouble(peak / MIB);
            m->increment = PyFloat_FromDouble((peak - baseline) / MIB);
            m->heap_peak = PyLong_FromLongLong(heap_peak);
            m->heap_net = PyLong_FromLongLong(cend.live);
            m->repeat = PyLong_FromLong(repeat);
            m->timeout = timeout > 0 ? PyFloat_FromDouble(timeout) : Py_NewRef(Py_None);
            m->interval = PyFloat_FromDouble(interval);
            m->include_children = PyBool_FromLong(children);
            PyObject_GC_Track(m);
            result = (PyObject *)m;
            for (int i = 0; i < MEMIT_NFIELDS; i++)
                if (*memit_field(m, i) == NULL)
                    Py_CLEAR(result);
        }
        if (result == NULL) {
            Py_XDECREF(exc);
            Py_XDECREF(val);
            Py_XDECREF(tb);
            goto done;
        }
        PyErr_Restore(exc, val, tb);
    }

    if (!quiet) {
        memit_lines(&text, peak / MIB, (peak - baseline) / MIB, (long long)heap_peak,
                    (long long)cend.live);
        if (text.len > 0)
            text.data[--text.len] = '\0';
        char a[48], c[48], d[48], e[48];
        report_fmt_mib(a, sizeof a, peak / MIB, 2, 0);
        report_fmt_mib(c, sizeof c, (peak - baseline) / MIB, 2, 1);
        report_fmt_mib(d, sizeof d, heap_peak / MIB, 2, 1);
        report_fmt_mib(e, sizeof e, cend.live / MIB, 2, 1);
        report_html_open(&html);
        report_buf_printf(&html,
                          "<table class=\"pyro-memit\" style=\"" REPORT_TABLE
                          "\"><tr><th style=\"" REPORT_TH_L "\"></th><th style=\"" REPORT_TH
                          "\">peak</th><th style=\"" REPORT_TH "\">increment</th></tr>"
                          "<tr><td style=\"" REPORT_TD_L "\">RSS</td><td style=\"" REPORT_TD
                          "\">%s</td><td style=\"" REPORT_TD "\">%s</td></tr>"
                          "<tr><td style=\"" REPORT_TD_L "\">heap (Python allocators%s)</td>"
                          "<td style=\"" REPORT_TD "\">%s</td><td style=\"" REPORT_TD
                          "\">net retained %s</td></tr></table>\n",
                          a, c, np_tracked ? " + NumPy" : "", d, e);
        if (failed)
            report_note(&text, &html, "(the statement raised in run %d of %ld)", runs, repeat);
        else if (repeat > 1)
            report_note(NULL, &html, "%d of %ld runs; the highest peak is shown", runs, repeat);
        report_html_close(&html);
        bundle = report_bundle_new(&text, &html);
        if (bundle == NULL || show(display, bundle) < 0) {
            if (!failed)
                goto done;
        }
    }
    if (failed)
        goto done; /* the statement's exception is pending */
    ret = want ? Py_NewRef(result) : Py_NewRef(Py_None);
done:
    if (started)
        memprof_stop();
    options_clear(&o);
    report_buf_free(&text);
    report_buf_free(&html);
    Py_XDECREF(bundle);
    Py_XDECREF(result);
    Py_XDECREF(usage_list);
    Py_XDECREF(setup_code);
    Py_XDECREF(code);
    Py_XDECREF(res);
    return ret;
}

/* ---- -f targets ----------------------------------------------------------------------- */

static void target_info_clear(mprun_target *t)
{
    Py_CLEAR(t->code);
    Py_CLEAR(t->filename);
    Py_CLEAR(t->qualname);
    Py_CLEAR(t->fullname);
    Py_CLEAR(t->lines);
}

/* Highest line number in code and its nested code objects, or -1. */
static int max_line(PyObject *code, int depth)
{
    int best = -1;
    PyObject *it = PyObject_CallMethod(code, "co_lines", NULL);
    PyObject *item;
    if (it == NULL) {
        PyErr_Clear();
        return -1;
    }
    PyObject *iter = PyObject_GetIter(it);
    Py_DECREF(it);
    if (iter == NULL) {
        PyErr_Clear();
        return -1;
    }
    while ((item = PyIter_Next(iter)) != NULL) {
        PyObject *ln =
            PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 3 ? PyTuple_GET_ITEM(item, 2) : NULL;
        if (ln != NULL && PyLong_Check(ln)) {
            long v = PyLong_AsLong(ln);
            if (v > best)
                best = (int)v;
        }
        Py_DECREF(item);
    }
    Py_DECREF(iter);
    PyErr_Clear();
    PyObject *consts = PyObject_GetAttrString(code, "co_consts");
    if (consts != NULL && PyTuple_Check(consts) && depth < 20) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++) {
            PyObject *c = PyTuple_GET_ITEM(consts, i);
            if (PyCode_Check(c)) {
                int m = max_line(c, depth + 1);
                if (m > best)
                    best = m;
            }
        }
    }
    Py_XDECREF(consts);
    PyErr_Clear();
    return best;
}

/* The Python function behind obj (function, bound method, staticmethod,
 * classmethod; the caller follows functools.wraps chains), or NULL
 * without an exception. Borrowed from obj or a new ref in *hold. */
static PyObject *as_function(PyObject *obj, PyObject **hold)
{
    *hold = NULL;
    if (PyFunction_Check(obj))
        return obj;
    if (PyMethod_Check(obj)) {
        PyObject *f = PyMethod_GET_FUNCTION(obj);
        return PyFunction_Check(f) ? f : NULL;
    }
    if (PyType_Check(obj) || PyModule_Check(obj))
        return NULL;
    PyObject *f = PyObject_GetAttrString(obj, "__func__");
    if (f == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyFunction_Check(f)) {
        Py_DECREF(f);
        return NULL;
    }
    *hold = f;
    return f;
}

/* Evaluates expr in ns and fills *t. Returns 0, or -1 with UsageError (or
 * another exception) set. */
static int resolve_target(PyObject *module, const options_magic *spec, PyObject *ns,
                          const char *expr, mprun_target *t)
{
    PyObject *obj = NULL, *hold = NULL, *inspect = NULL, *src = NULL, *linecache = NULL;
    int rc = -1;

    memset(t, 0, sizeof *t);
    PyObject *ecode = Py_CompileString(expr, "<-f>", Py_eval_input);
    if (ecode != NULL) {
        obj = run_code(ecode, ns);
        Py_DECREF(ecode);
    }
    if (obj == NULL) {
        char why[512];
        options_take_error(why, sizeof why);
        return options_usage_error(module, spec, "could not find function %s (%s)", expr, why);
    }
    PyObject *func = as_function(obj, &hold);
    char hint[512];
    if (func == NULL && targets_wrapped_hint(obj, expr, hint, sizeof hint)) {
        options_usage_error(module, spec, "-f %s is %s", expr, hint);
        goto done;
    }
    if (func != NULL) {
        /* A functools.wraps wrapper: profile the body it wraps, as %lprun does. */
        PyObject *body = targets_unwrap(func);
        if (body != func && PyFunction_Check(body)) {
            Py_XSETREF(hold, body);
            func = body;
        } else {
            Py_DECREF(body);
        }
    }
    if (func == NULL) {
        options_usage_error(module, spec,
                            "-f %s is a %s, not a Python function; pass a function or method "
                            "defined in Python (classes and builtins have no lines to profile)",
                            expr, Py_TYPE(obj)->tp_name);
        goto done;
    }
    t->code = Py_NewRef(PyFunction_GET_CODE(func));
    t->filename = PyObject_GetAttrString(t->code, "co_filename");
    t->qualname = PyObject_GetAttrString(t->code, "co_qualname");
    if (t->filename == NULL || t->qualname == NULL)
        goto done;
    PyObject *modname = PyFunction_GET_MODULE(func);
    PyObject *fname = PyObject_GetAttrString(func, "__name__");
    if (fname == NULL)
        goto done;
    if (modname != NULL && PyUnicode_Check(modname))
        t->fullname = PyUnicode_FromFormat("%U.%S", modname, fname);
    else
        t->fullname = PyUnicode_FromFormat("__main__.%S", fname);
    Py_DECREF(fname);
    if (t->fullname == NULL)
        goto done;

    inspect = PyImport_ImportModule("inspect");
    if (inspect == NULL)
        goto done;
    src = PyObject_CallMethod(inspect, "getsourcelines", "(O)", t->code);
    long first = -1;
    Py_ssize_t nlines = 0;
    if (src != NULL && PyTuple_Check(src) && PyTuple_GET_SIZE(src) == 2 &&
        PyList_Check(PyTuple_GET_ITEM(src, 0))) {
        first = PyLong_AsLong(PyTuple_GET_ITEM(src, 1));
        nlines = PyList_GET_SIZE(PyTuple_GET_ITEM(src, 0));
    }
    PyErr_Clear();
    if (first <= 0 || nlines <= 0) {
        PyObject *fl = PyObject_GetAttrString(t->code, "co_firstlineno");
        first = fl ? PyLong_AsLong(fl) : 1;
        Py_XDECREF(fl);
        PyErr_Clear();
        int m = max_line(t->code, 0);
        nlines = m >= first ? m - first + 1 : 1;
    }
    t->first = (int)first;
    t->last = (int)(first + nlines - 1);

    linecache = PyImport_ImportModule("linecache");
    if (linecache == NULL)
        goto done;
    t->lines = PyObject_CallMethod(linecache, "getlines", "(O)", t->filename);
    if (t->lines == NULL || !PyList_Check(t->lines)) {
        PyErr_Clear();
        Py_XSETREF(t->lines, PyList_New(0));
        if (t->lines == NULL)
            goto done;
    }
    rc = 0;
done:
    if (rc < 0)
        target_info_clear(t);
    Py_XDECREF(obj);
    Py_XDECREF(hold);
    Py_XDECREF(inspect);
    Py_XDECREF(src);
    Py_XDECREF(linecache);
    return rc;
}

/* Resolves the -f values (option slot of o) into new targets: each
 * function's lines first..last if lines, else its first line only (%%mprof
 * brackets calls). A function nested in an earlier one, or given twice, is
 * skipped. Appends to infos[*ninfos...] (room for MAX_TARGETS; the caller
 * clears them). Returns the targets (free with memprof_targets_free), or
 * NULL with an exception set. */
static memprof_targets *targets_new(PyObject *module, const options_magic *spec, PyObject *ns,
                                    const options_parsed *o, int slot, int lines,
                                    mprun_target *infos, size_t *ninfos)
{
    if (options_count(o, slot) > MAX_TARGETS) {
        options_usage_error(module, spec, "too many -f functions (at most %d)", MAX_TARGETS);
        return NULL;
    }
    memprof_targets *ts = memprof_targets_new();
    if (ts == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < options_count(o, slot); i++) {
        mprun_target ti;
        if (resolve_target(module, spec, ns, options_str_at(o, slot, i), &ti) < 0)
            goto error;
        int idx = memprof_targets_add(ts, ti.code, ti.first, lines ? ti.last : ti.first);
        if (idx < 0) {
            target_info_clear(&ti);
            if (!PyErr_ExceptionMatches(PyExc_ValueError))
                goto error;
            PyErr_Clear(); /* nested in an earlier target: already covered */
            continue;
        }
        if ((size_t)idx < *ninfos) {
            target_info_clear(&ti); /* the same function twice */
            continue;
        }
        infos[(*ninfos)++] = ti;
    }
    return ts;
error:
    memprof_targets_free(ts);
    return NULL;
}

/* ---- %mprun -------------------------------------------------------------------------- */

static const char mprun_usage[] =
    "Usage: %mprun -f func [-f func2 ...] [-T file] [-r] [-c] statement";

enum { PO_F, PO_T, PO_R, PO_C };
static const options_spec mprun_opts[] = {
    [PO_F] = {'f', NULL, OPTIONS_STR, 1, .meta = "FUNC",
              .help = "a function to profile: an expression in the user namespace"},
    [PO_T] = {'T', NULL, OPTIONS_STR, .meta = "FILE", .help = "also write the text report to FILE"},
    [PO_R] = {'r', NULL, OPTIONS_FLAG,
              .help = "return the results (functions, text, html) as a SimpleNamespace"},
    [PO_C] = {'c', NULL, OPTIONS_FLAG, .help = "add the RSS of child processes"},
};
static const options_magic mprun_magic_spec = {
    "%mprun",
    mprun_usage,
    mprun_opts,
    sizeof mprun_opts / sizeof mprun_opts[0],
    0,
    .forms = "%%mprun [options]   (the cell body is the statement)",
    .summary = "Profile chosen functions' memory line by line.",
    .details = "For each line of the -f functions: RSS and its increment as memory_profiler\n"
               "shows them, plus the bytes allocated and freed there, the net change and\n"
               "the peak, charged by allocator hooks to the line that ran.",
    .example = "  %mprun -f build build(10**5)",
};

/* The -r result: SimpleNamespace(functions=[...], text=..., html=...). */
static PyObject *mprun_result(mprun_target *infos, memprof_targets *ts, size_t n, PyObject *bundle)
{
    PyObject *funcs = PyList_New(0), *types = NULL, *ns_type = NULL, *kw = NULL, *res = NULL;
    if (funcs == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        memprof_target *t = memprof_targets_get(ts, i);
        PyObject *lines = PyDict_New();
        if (lines == NULL)
            goto done;
        for (int k = 0; k < t->nlines; k++) {
            memprof_line *l = &t->lines[k];
            if (l->occurrences == 0)
                continue;
            PyObject *d = Py_BuildValue(
                "{s:d,s:d,s:K,s:K,s:K,s:L,s:L}", "mem_usage", l->mem / MIB, "increment",
                l->inc / MIB, "occurrences", (unsigned long long)l->occurrences, "allocated",
                (unsigned long long)l->allocated, "freed", (unsigned long long)l->freed, "net",
                (long long)(l->allocated - l->freed), "peak", (long long)l->peak);
            PyObject *key = PyLong_FromLong(t->first + k);
            int rc = d && key ? PyDict_SetItem(lines, key, d) : -1;
            Py_XDECREF(d);
            Py_XDECREF(key);
            if (rc < 0) {
                Py_DECREF(lines);
                goto done;
            }
        }
        PyObject *f = Py_BuildValue("{s:O,s:O,s:i,s:i,s:N}", "filename", infos[i].filename, "name",
                                    infos[i].qualname, "first_line", infos[i].first, "last_line",
                                    infos[i].last, "lines", lines);
        if (f == NULL || PyList_Append(funcs, f) < 0) {
            Py_XDECREF(f);
            goto done;
        }
        Py_DECREF(f);
    }
    types = PyImport_ImportModule("types");
    if (types == NULL)
        goto done;
    ns_type = PyObject_GetAttrString(types, "SimpleNamespace");
    if (ns_type == NULL)
        goto done;
    kw = Py_BuildValue("{s:O,s:O,s:O}", "functions", funcs, "text",
                       PyDict_GetItemString(bundle, "text/plain"), "html",
                       PyDict_GetItemString(bundle, "text/html"));
    if (kw == NULL)
        goto done;
    PyObject *empty = PyTuple_New(0);
    if (empty == NULL)
        goto done;
    res = PyObject_Call(ns_type, empty, kw);
    Py_DECREF(empty);
done:
    Py_XDECREF(funcs);
    Py_XDECREF(types);
    Py_XDECREF(ns_type);
    Py_XDECREF(kw);
    return res;
}

/* Writes text to path. Returns 0, or -1 with OSError set. */
static PyObject *mprun_magic(PyObject *module, PyObject *args)
{
    PyObject *cell, *ns, *display;
    PyObject *code = NULL, *res = NULL, *bundle = NULL, *ret = NULL, *src = NULL;
    options_parsed o = OPTIONS_PARSED_INIT;
    mprun_target infos[MAX_TARGETS];
    size_t ninfos = 0;
    memprof_targets *ts = NULL;
    report_buf text = REPORT_BUF_INIT, html = REPORT_BUF_INIT;
    int failed = 0, np_tracked = 0, saved = 0;

    if (magic_start(module, args, &mprun_magic_spec, 0, &cell, &ns, &display, &o) == NULL)
        goto done;
    if (!options_given(&o, PO_F)) {
        options_usage_error(module, &mprun_magic_spec,
                            "say which functions to profile with -f, e.g. %%mprun -f func "
                            "func(arg)");
        goto done;
    }
    src = options_statement(&o, cell);
    if (src == NULL)
        goto done;
    const char *stmt = PyUnicode_AsUTF8(src);
    if (stmt == NULL)
        goto done;
    if (options_blank(stmt)) {
        const char *f0 = options_str_at(&o, PO_F, 0);
        options_usage_error(module, &mprun_magic_spec,
                            "give a statement to run, e.g. %%mprun -f %s %s()", f0, f0);
        goto done;
    }
    ts = targets_new(module, &mprun_magic_spec, ns, &o, PO_F, 1, infos, &ninfos);
    if (ts == NULL)
        goto done;
    code = compile_src(stmt, "<mprun>");
    if (code == NULL)
        goto done;

    if (memprof_start() < 0)
        goto done;
    if (memprof_lines_start(ts, options_given(&o, PO_C)) < 0) {
        memprof_stop();
        goto done;
    }
    res = run_code(code, ns);
    memprof_lines_stop();
    np_tracked = memprof_numpy_tracked();
    memprof_stop();
    failed = res == NULL;

    {
        PyObject *exc, *val, *tb;
        PyErr_Fetch(&exc, &val, &tb);
        mprun_render_lines_text(&text, infos, ts, ninfos);
        if (options_given(&o, PO_T)) {
            const char *path = options_str_at(&o, PO_T, options_count(&o, PO_T) - 1);
            if (report_write_file(path, text.data, text.len) < 0) {
                /* Shown after the table (the statement's own error wins). */
                if (exc != NULL)
                    PyErr_Clear();
                else
                    PyErr_Fetch(&exc, &val, &tb);
            } else {
                report_buf_printf(&text, "\n\n*** Profile printout saved to text file %s.", path);
                saved = 1;
            }
        }
        mprun_render_lines_html(&html, infos, ts, ninfos, np_tracked);
        if (saved)
            report_note(NULL, &html, "*** Profile printout saved to text file %s.",
                        options_str_at(&o, PO_T, options_count(&o, PO_T) - 1));
        if (memprof_lost() || memprof_trace_lost()) {
            report_buf_puts(&text, "\n");
            report_note(&text, &html,
                        "(out of memory or recursion too deep: some allocations were not "
                        "attributed)");
        }
        if (failed) {
            report_buf_puts(&text, "\n");
            report_note(&text, &html,
                        "*** The statement raised; these are the figures up to that point.");
        }
        report_html_close(&html);
        bundle = report_bundle_new(&text, &html);
        if (bundle == NULL || show(display, bundle) < 0) {
            if (exc == NULL)
                goto done;
            PyErr_Clear();
        }
        PyErr_Restore(exc, val, tb);
    }
    if (failed || PyErr_Occurred())
        goto done;
    if (options_given(&o, PO_R))
        ret = mprun_result(infos, ts, ninfos, bundle);
    else
        ret = Py_NewRef(Py_None);
done:
    for (size_t i = 0; i < ninfos; i++)
        target_info_clear(&infos[i]);
    memprof_targets_free(ts);
    options_clear(&o);
    report_buf_free(&text);
    report_buf_free(&html);
    Py_XDECREF(bundle);
    Py_XDECREF(code);
    Py_XDECREF(res);
    Py_XDECREF(src);
    return ret;
}

/* ---- %%mprof ------------------------------------------------------------------------- */

static const char mprof_usage[] = "Usage: %%mprof [-f func ...] [-i INTERVAL] [--dat FILE]  "
                                  "(a cell magic: the cell body runs under the recorder)";

enum { FO_F, FO_I, FO_DAT };
static const options_spec mprof_opts[] = {
    [FO_F] = {'f', NULL, OPTIONS_STR, 1, .meta = "FUNC",
              .help = "mark each call of this function on the chart"},
    [FO_I] = {'i', NULL, OPTIONS_FLOAT, 0, 0.0, .bad = SECONDS_BAD, .meta = "INTERVAL",
              .help = "sample every INTERVAL seconds"},
    [FO_DAT] = {0, "dat", OPTIONS_STR, .meta = "FILE",
                .help = "also write the samples to FILE in mprof's .dat format"},
};
static const options_magic mprof_magic_spec = {
    "%%mprof",
    mprof_usage,
    mprof_opts,
    sizeof mprof_opts / sizeof mprof_opts[0],
    0,
    .summary = "Record memory over time while the cell runs, drawn as a chart.",
    .details = "RSS and the Python heap are sampled while the cell body runs and shown as\n"
               "an SVG chart (an <img>, so it shows in untrusted notebooks too).",
    .example = "  %%mprof -f step -i 0.005\n"
               "  for i in range(10):\n"
               "      step(i)",
};

static PyObject *mprof_magic(PyObject *module, PyObject *args)
{
    PyObject *cell, *ns, *display;
    PyObject *code = NULL, *res = NULL, *bundle = NULL, *ret = NULL;
    options_parsed o = OPTIONS_PARSED_INIT;
    mprun_target infos[MAX_TARGETS];
    size_t ninfos = 0, nsmp = 0;
    memprof_targets *ts = NULL;
    memprof_sampler *sampler = NULL;
    memprof_sample *smp = NULL;
    memprof_counters cend;
    report_buf text = REPORT_BUF_INIT, html = REPORT_BUF_INIT, dat = REPORT_BUF_INIT;
    double interval;
    int started = 0, spans = 0;

    const char *cline = magic_start(module, args, &mprof_magic_spec, 1, &cell, &ns, &display, &o);
    const char *body = cline ? PyUnicode_AsUTF8(cell) : NULL;
    if (body == NULL)
        goto done;
    interval = options_double(&o, FO_I, 0.01);
    {
        const char *q = o.rest;
        while (Py_ISSPACE(*q))
            q++;
        if (*q != '\0') {
            options_usage_error(module, &mprof_magic_spec,
                                "unexpected '%s' on the first line; the "
                                "code goes in the cell body",
                                q);
            goto done;
        }
    }
    ts = targets_new(module, &mprof_magic_spec, ns, &o, FO_F, 0, infos, &ninfos);
    if (ts == NULL)
        goto done;
    code = compile_src(body, "<mprof>");
    if (code == NULL)
        goto done;

    if (memprof_start() < 0)
        goto done;
    started = 1;
    sampler = memprof_sampler_start(interval, 0, 1, 0);
    if (sampler == NULL)
        goto done;
    if (ninfos > 0) {
        if (memprof_spans_start(ts) < 0)
            goto done;
        spans = 1;
    }
    double t0 = memprof_wall();
    res = run_code(code, ns);
    if (spans)
        memprof_spans_stop();
    spans = 0;
    int64_t max_rss, heap_peak;
    memprof_sampler_stop(sampler, &max_rss, &heap_peak, &smp, &nsmp);
    sampler = NULL;
    memprof_get(&cend);
    int np_tracked = memprof_numpy_tracked();
    memprof_stop();
    started = 0;

    {
        PyObject *exc, *val, *tb;
        PyErr_Fetch(&exc, &val, &tb);
        double dur = nsmp ? smp[nsmp - 1].t - t0 : 0;
        for (size_t i = 0; i < ninfos; i++) {
            memprof_target *t = memprof_targets_get(ts, i);
            for (size_t k = 0; k < t->nspans; k++) {
                if (t->spans[k].start_mem > max_rss)
                    max_rss = t->spans[k].start_mem;
                if (t->spans[k].end_mem > max_rss)
                    max_rss = t->spans[k].end_mem;
            }
        }
        int64_t rss0 = nsmp ? smp[0].rss : 0, rss1 = nsmp ? smp[nsmp - 1].rss : 0;
        report_buf_printf(&text, "%%%%mprof: %.3f s, %zu samples every %g s\n", dur, nsmp,
                          interval);
        char m1[48], m2[48], m3[48];
        report_fmt_mib(m1, sizeof m1, (max_rss - rss0) / MIB, 2, 1);
        report_fmt_mib(m2, sizeof m2, heap_peak / MIB, 2, 1);
        report_fmt_mib(m3, sizeof m3, cend.live / MIB, 2, 1);
        report_buf_printf(&text, "RSS: %.2f MiB at start, peak %.2f MiB (%s), %.2f MiB at end\n",
                          rss0 / MIB, max_rss / MIB, m1, rss1 / MIB);
        report_buf_printf(&text, "Python heap%s: peak %s above start, net retained %s\n",
                          np_tracked ? " (+ NumPy)" : "", m2, m3);
        for (size_t i = 0; i < ninfos; i++) {
            memprof_target *t = memprof_targets_get(ts, i);
            const char *name = PyUnicode_AsUTF8(infos[i].fullname);
            report_buf_printf(&text, "%s: %zu call%s", name ? name : "?", t->nspans,
                              t->nspans == 1 ? "" : "s");
            /* One call a line (the first five), so the text fits a terminal. */
            for (size_t k = 0; k < t->nspans && k < 5; k++) {
                memprof_span *s = &t->spans[k];
                report_buf_printf(&text, "\n  [%.3f s - %.3f s] %.1f -> %.1f MiB", s->start_t - t0,
                                  s->end_t - t0, s->start_mem / MIB, s->end_mem / MIB);
            }
            if (t->nspans > 5)
                report_buf_printf(&text, "\n  ... and %zu more", t->nspans - 5);
            report_buf_puts(&text, "\n");
        }
        if (options_given(&o, FO_DAT)) {
            const char *path = options_str_at(&o, FO_DAT, 0);
            report_buf_printf(&dat, "CMDLINE %%%%mprof %s\n", cline);
            for (size_t i = 0; i < nsmp; i++)
                report_buf_printf(&dat, "MEM %.6f %.4f\n", smp[i].rss / MIB, smp[i].t);
            for (size_t i = 0; i < ninfos; i++) {
                memprof_target *t = memprof_targets_get(ts, i);
                const char *name = PyUnicode_AsUTF8(infos[i].fullname);
                for (size_t k = 0; k < t->nspans; k++) {
                    memprof_span *s = &t->spans[k];
                    report_buf_printf(&dat, "FUNC %s %.4f %.4f %.4f %.4f %d\n", name ? name : "?",
                                      s->start_mem / MIB, s->start_t, s->end_mem / MIB, s->end_t,
                                      s->level);
                }
            }
            if (report_write_file(path, dat.data, dat.len) < 0) {
                /* Shown after the chart (the statement's own error wins). */
                if (exc != NULL)
                    PyErr_Clear();
                else
                    PyErr_Fetch(&exc, &val, &tb);
            } else {
                report_buf_printf(&text,
                                  "mprofile data written to %s (plot it with: mprof plot %s)\n",
                                  path, path);
            }
        }
        if (text.len > 0)
            text.data[--text.len] = '\0';
        if (res == NULL)
            report_note(&text, NULL,
                        "*** The cell raised; the chart and figures run up to that point.");
        int bad = mprun_render_mprof_html(&html, smp, nsmp, t0, infos, ts, ninfos, &text) < 0;
        bundle = bad ? NULL : report_bundle_new(&text, &html);
        if (bundle == NULL || show(display, bundle) < 0) {
            if (exc == NULL)
                goto done;
            PyErr_Clear();
        }
        PyErr_Restore(exc, val, tb);
    }
    if (res != NULL && !PyErr_Occurred())
        ret = Py_NewRef(Py_None);
done:
    if (spans)
        memprof_spans_stop();
    if (sampler != NULL)
        memprof_sampler_stop(sampler, NULL, NULL, NULL, NULL);
    if (started)
        memprof_stop();
    for (size_t i = 0; i < ninfos; i++)
        target_info_clear(&infos[i]);
    memprof_targets_free(ts);
    free(smp);
    options_clear(&o);
    report_buf_free(&text);
    report_buf_free(&html);
    report_buf_free(&dat);
    Py_XDECREF(bundle);
    Py_XDECREF(code);
    Py_XDECREF(res);
    return ret;
}

/* ---- registration ------------------------------------------------------------------------ */

static PyMethodDef magic_defs[] = {
    {"memit", memit_magic, METH_VARARGS,
     "memit(line, cell, ns, display): %memit / %%memit - peak RSS and Python heap of a statement."},
    {"mprun", mprun_magic, METH_VARARGS,
     "mprun(line, cell, ns, display): %mprun - line-by-line memory of the -f functions."},
    {"mprof", mprof_magic, METH_VARARGS,
     "mprof(line, cell, ns, display): %%mprof - RSS and heap over time, with an SVG chart."},
    {NULL, NULL, 0, NULL},
};

int mprun_module_exec(PyObject *module)
{
    static const char *const kinds[] = {"line_cell", "line_cell", "cell"};
    PyObject *type = PyType_FromModuleAndSpec(module, &memit_spec, NULL);
    if (type == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "MemitResult", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    Py_DECREF(type);
    if (module_add_magic_help(module, "memit", &memit_magic_spec) < 0 ||
        module_add_magic_help(module, "mprun", &mprun_magic_spec) < 0 ||
        module_add_magic_help(module, "mprof", &mprof_magic_spec) < 0)
        return -1;
    return module_add_magics(module, magic_defs, kinds);
}
