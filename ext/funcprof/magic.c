/* funcprof/magic.c - the %prun, %%prun and %pstats magics.
 *
 * Owns the option specs of each magic (options.c parses them), checking -s
 * and -l, running the statement under a pyrometer.Profile in the user
 * namespace, the -T / -D files and the -r result. The text and HTML of the
 * report are funcprof/render.c's.
 */
#include "funcprof/funcprof.h"
#include "module.h"
#include "options.h"
#include "funcprof/render.h"
#include "report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- option specs -------------------------------------------------------- */

/* Indices into the spec tables; -l and -s sit at the same place in both. */
enum { OPT_L, OPT_S, OPT_R, OPT_T, OPT_D, OPT_Q, OPT_THREADS };
enum { OPT_CALLERS = 2, OPT_CALLEES };

static const options_spec prun_specs[] = {
    [OPT_L] = {'l', NULL, OPTIONS_STR, 1, .example = "-l 10, -l 0.25 or -l 'fib'", .meta = "LIMIT",
               .help = "limit the rows: a count (-l 10), a fraction (-l 0.25) or a regular "
                       "expression on the function's name (-l fib)"},
    [OPT_S] = {'s', NULL, OPTIONS_STR, 1, .example = "-s cumulative", .meta = "KEY",
               .help = "sort by KEY, as pstats does (time, cumulative, calls, ncalls, name, "
                       "filename, line, ...); default time"},
    [OPT_R] = {'r', NULL, OPTIONS_FLAG,
               .help = "return the profile as a pstats.Stats (a subclass), as IPython does"},
    [OPT_T] = {'T', NULL, OPTIONS_STR, .example = "-T profile.txt", .meta = "FILE",
               .help = "also write the text report to FILE"},
    [OPT_D] = {'D', NULL, OPTIONS_STR, .example = "-D profile.prof", .meta = "FILE",
               .help = "write a marshal dump that pstats, snakeviz and gprof2dot read"},
    [OPT_Q] = {'q', NULL, OPTIONS_FLAG, .help = "show nothing (with -r, -T or -D)"},
    [OPT_THREADS] = {0, "threads", OPTIONS_FLAG,
                     .help = "profile every thread, not only the one running the statement"},
};

static const options_spec pstats_specs[] = {
    [OPT_L] = {'l', NULL, OPTIONS_STR, 1, .example = "-l 10", .meta = "LIMIT",
               .help = "limit the rows: a count, a fraction or a regular expression"},
    [OPT_S] = {'s', NULL, OPTIONS_STR, 1, .example = "-s cumulative", .meta = "KEY",
               .help = "sort by KEY, as pstats does; default time"},
    [OPT_CALLERS] = {0, "callers", OPTIONS_FLAG,
                     .help = "add pstats' print_callers text and open the callers view"},
    [OPT_CALLEES] = {0, "callees", OPTIONS_FLAG,
                     .help = "add pstats' print_callees text and open the callees view"},
};

static const options_magic prun_magic_spec = {
    "%prun",
    "Usage: %prun [-l LIMIT]... [-s KEY]... [-r] [-q] [-T FILE] [-D FILE] [--threads] STATEMENT",
    prun_specs,
    sizeof prun_specs / sizeof prun_specs[0],
    0,
    .forms = "%%prun [options] [STATEMENT]   (the cell body is profiled after STATEMENT)",
    .summary = "Profile a statement with pyrometer's native function profiler.",
    .details = "Counts every call as cProfile does and shows pstats' text with an HTML table,\n"
               "callers and callees, and an icicle graph. Functions defined in notebook cells\n"
               "are named after their cell (In [3]). The statement runs in the user namespace.",
    .example = "  %prun -s cumulative -l 10 fib(25)\n"
               "  stats = %prun -r -q fib(20)"};

static const options_magic pstats_magic_spec = {
    "%pstats",
    "Usage: %pstats FILE [-s KEY]... [-l LIMIT]... [--callers] [--callees]",
    pstats_specs,
    sizeof pstats_specs / sizeof pstats_specs[0],
    1,
    .summary = "Show a pstats dump as %prun shows a profile.",
    .details = "FILE is a dump written by %prun -D, python -m cProfile -o or\n"
               "cProfile.Profile.dump_stats; sorted by time unless -s says otherwise.",
    .example = "  %prun -q -D fib.prof fib(20)\n"
               "  %pstats fib.prof -s cumulative --callers"};

/* ---- validating -s and -l ---------------------------------------------- */

/* Returns a new tuple of sort keys (default: "time"), or NULL with a
 * UsageError for a key pstats does not know. */
static PyObject *sort_keys(PyObject *module, const options_magic *ms, PyObject *pstats,
                           PyObject *given)
{
    PyObject *keys = NULL, *st = NULL, *defs = NULL;
    if (given == NULL)
        return Py_BuildValue("(s)", "time");
    st = PyObject_CallMethod(pstats, "Stats", NULL);
    if (st == NULL)
        return NULL;
    defs = PyObject_CallMethod(st, "get_sort_arg_defs", NULL);
    Py_DECREF(st);
    if (defs == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(given);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(given, i);
        int has = PyDict_Contains(defs, k);
        if (has < 0)
            goto error;
        if (!has) {
            options_usage_error(
                module, ms,
                "-s %s is not a sort key; use one of calls, cumulative, cumtime, file, filename, "
                "line, module, name, ncalls, nfl, pcalls, stdname, time, tottime (or an "
                "unambiguous "
                "prefix), e.g. -s cumulative",
                PyUnicode_AsUTF8(k));
            goto error;
        }
    }
    keys = PyList_AsTuple(given);
error:
    Py_DECREF(defs);
    return keys;
}

/* Converts -l values as IPython does (int, else float, else regex).
 * Returns a new tuple, or NULL with a UsageError for a bad value. */
static PyObject *limits(PyObject *module, const options_magic *ms, PyObject *given)
{
    if (given == NULL)
        return PyTuple_New(0);
    Py_ssize_t n = PyList_GET_SIZE(given);
    PyObject *out = PyTuple_New(n), *re = NULL;
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(given, i), *v;
        const char *txt = PyUnicode_AsUTF8(s);
        if (txt == NULL)
            goto error;
        v = PyLong_FromUnicodeObject(s, 10);
        if (v != NULL && PyLong_AsLong(v) < 0) {
            Py_DECREF(v);
            options_usage_error(module, ms, "-l %s: a row count cannot be negative", txt);
            goto error;
        }
        if (v == NULL) {
            PyErr_Clear();
            v = PyFloat_FromString(s);
            if (v != NULL) {
                double d = PyFloat_AS_DOUBLE(v);
                if (!(d >= 0.0 && d < 1.0)) {
                    Py_DECREF(v);
                    options_usage_error(
                        module, ms, "-l %s: a fraction must be between 0 and 1, e.g. -l 0.25", txt);
                    goto error;
                }
            }
        }
        if (v == NULL) {
            PyErr_Clear();
            if (re == NULL && (re = PyImport_ImportModule("re")) == NULL)
                goto error;
            PyObject *c = PyObject_CallMethod(re, "compile", "(O)", s);
            if (c == NULL) {
                PyErr_Clear();
                options_usage_error(
                    module, ms,
                    "-l %s is not an int, a fraction or a valid regular expression; "
                    "e.g. -l 10, -l 0.25 or -l 'fib'",
                    txt);
                goto error;
            }
            Py_DECREF(c);
            v = Py_NewRef(s);
        }
        PyTuple_SET_ITEM(out, i, v);
    }
    Py_XDECREF(re);
    return out;
error:
    Py_XDECREF(re);
    Py_DECREF(out);
    return NULL;
}

/* ---- text through pstats ------------------------------------------------ */

/* Takes st (a new reference, or NULL with an exception set): strips its
 * dirs if strip, sorts it by keys. Returns st, or NULL with an exception set
 * (st released). */
static PyObject *sorted_stats(PyObject *st, int strip, PyObject *keys)
{
    if (st == NULL)
        return NULL;
    PyObject *r;
    if (strip) {
        r = PyObject_CallMethod(st, "strip_dirs", NULL);
        if (r == NULL)
            goto error;
        Py_DECREF(r);
    }
    PyObject *sort = PyObject_GetAttrString(st, "sort_stats");
    if (sort == NULL)
        goto error;
    r = PyObject_Call(sort, keys, NULL);
    Py_DECREF(sort);
    if (r == NULL)
        goto error;
    Py_DECREF(r);
    return st;
error:
    Py_DECREF(st);
    return NULL;
}

/* Returns a new pstats.Stats for src (a Profile or a file name), with
 * dirs stripped if strip, sorted by keys; or NULL with an exception set. */
static PyObject *make_stats(PyObject *pstats, PyObject *src, int strip, PyObject *keys)
{
    return sorted_stats(PyObject_CallMethod(pstats, "Stats", "(O)", src), strip, keys);
}

/* ---- files -------------------------------------------------------------- */

/* Returns a new str: os.path.expanduser(path). */
static PyObject *expand_path(PyObject *path)
{
    PyObject *os = PyImport_ImportModule("os.path");
    if (os == NULL)
        return NULL;
    PyObject *r = PyObject_CallMethod(os, "expanduser", "(O)", path);
    Py_DECREF(os);
    return r;
}

/* ---- %prun / %%prun --------------------------------------------------------- */

static int call_display(PyObject *display, PyObject *bundle)
{
    PyObject *r = PyObject_CallOneArg(display, bundle);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Renders and publishes the report for a finished profile, and writes the
 * -T / -D files. Returns 0, or -1 with an exception set. */
static int prun_report(PyObject *prof, options_parsed *o, PyObject *keys, PyObject *lims,
                       PyObject *display, const char *sys_exit)
{
    PyObject *pstats = NULL, *st = NULL, *st_full = NULL, *text = NULL, *order = NULL;
    report_buf tb = REPORT_BUF_INIT, hb = REPORT_BUF_INIT, notes = REPORT_BUF_INIT;
    int rc = -1;
    int quiet = o->values[OPT_Q] != NULL;

    pstats = PyImport_ImportModule("pstats");
    if (pstats == NULL)
        goto done;
    /* Text as IPython's %prun shows it: dirs stripped, then print_stats
     * (not needed for -q without -T). */
    if (quiet && o->values[OPT_T] == NULL)
        ;
    else if ((st = make_stats(pstats, prof, 1, keys)) == NULL) {
        /* pstats refuses an empty profile (nothing returned while enabled). */
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            goto done;
        PyErr_Clear();
        report_buf_puts(&tb, "         0 function calls in 0.000 seconds");
        report_html_open(&hb);
        report_html_head(&hb, "0 function calls");
        report_html_close(&hb);
    } else {
        text = prun_render_capture(st, "print_stats", lims);
        if (text == NULL)
            goto done;
        const char *t = PyUnicode_AsUTF8(text);
        if (t == NULL)
            goto done;
        report_buf_puts(&tb, t);
    }
    if (sys_exit != NULL) {
        report_buf_printf(&notes, "%s%s", notes.len ? "\n" : "", sys_exit);
    }
    if (o->values[OPT_D] != NULL) {
        PyObject *path =
            expand_path(PyList_GET_ITEM(o->values[OPT_D], PyList_GET_SIZE(o->values[OPT_D]) - 1));
        if (path == NULL)
            goto done;
        PyObject *r = PyObject_CallMethod(prof, "dump_stats", "(O)", path);
        if (r == NULL) {
            Py_DECREF(path);
            goto done;
        }
        Py_DECREF(r);
        PyObject *rep =
            PyObject_Repr(PyList_GET_ITEM(o->values[OPT_D], PyList_GET_SIZE(o->values[OPT_D]) - 1));
        Py_DECREF(path);
        if (rep == NULL)
            goto done;
        report_buf_printf(&notes, "%s*** Profile stats marshalled to file %s.",
                          notes.len ? "\n" : "", PyUnicode_AsUTF8(rep));
        Py_DECREF(rep);
    }
    if (o->values[OPT_T] != NULL) {
        PyObject *given = PyList_GET_ITEM(o->values[OPT_T], PyList_GET_SIZE(o->values[OPT_T]) - 1);
        PyObject *path = expand_path(given);
        if (path == NULL)
            goto done;
        PyObject *body = text ? Py_NewRef(text) : PyUnicode_FromString(tb.data ? tb.data : "");
        int bad = body == NULL || report_write_text(path, body) < 0;
        Py_XDECREF(body);
        Py_DECREF(path);
        if (bad)
            goto done;
        PyObject *rep = PyObject_Repr(given);
        if (rep == NULL)
            goto done;
        report_buf_printf(&notes, "%s*** Profile printout saved to text file %s.",
                          notes.len ? "\n" : "", PyUnicode_AsUTF8(rep));
        Py_DECREF(rep);
    }
    if (quiet) {
        if (notes.len == 0) {
            rc = 0;
            goto done;
        }
        report_buf_free(&tb);
        report_buf_free(&hb);
        report_buf_puts(&tb, notes.data);
        report_html_open(&hb);
        for (const char *p = notes.data; *p;) {
            const char *e = strchr(p, '\n');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            report_note(NULL, &hb, "%.*s", (int)len, p);
            p = e ? e + 1 : p + len;
        }
        report_html_close(&hb);
    } else if (st != NULL) {
        /* HTML from the unstripped stats, so full paths stay in the titles. */
        st_full = make_stats(pstats, prof, 0, keys);
        if (st_full == NULL)
            goto done;
        order = prun_render_print_list(st_full, lims);
        if (order == NULL)
            goto done;
        prun_html_args a = {st_full,
                            order,
                            0,
                            PyTuple_GET_SIZE(lims) > 0,
                            "%prun -l 100 shows 100 rows; the text version (-T FILE) has them all.",
                            notes.len ? notes.data : NULL};
        if (prun_render_html(&hb, &a) < 0)
            goto done;
        if (notes.len) {
            report_buf_puts(&tb, "\n\n");
            report_buf_puts(&tb, notes.data);
        }
    }
    PyObject *bundle = report_bundle_new(&tb, &hb);
    if (bundle == NULL)
        goto done;
    rc = call_display(display, bundle);
    Py_DECREF(bundle);
done:
    Py_XDECREF(pstats);
    Py_XDECREF(st);
    Py_XDECREF(st_full);
    Py_XDECREF(text);
    Py_XDECREF(order);
    report_buf_free(&tb);
    report_buf_free(&hb);
    report_buf_free(&notes);
    return rc;
}

/* ---- what -r returns ------------------------------------------------------
 * IPython's %prun -r returns a pstats.Stats (dirs stripped, sorted), and
 * people call .sort_stats() / .print_stats() on it. Ours is a pstats.Stats
 * subclass that pstats.Stats(obj) also accepts: it has create_stats(), and
 * its .stats survives pstats emptying the source object's .stats. */

static const char stats_class_src[] =
    "import pstats\n"
    "class Stats(pstats.Stats):\n"
    "    \"\"\"pstats.Stats of a %prun run, as %prun -r returns it.\n\n"
    "    Sort and print it as any pstats.Stats; pstats.Stats(it) loads it too.\"\"\"\n"
    "    __module__ = 'pyrometer'\n"
    "    def create_stats(self):\n"
    "        pass\n"
    "    @property\n"
    "    def stats(self):\n"
    "        return self.__dict__.get('_stats', {})\n"
    "    @stats.setter\n"
    "    def stats(self, value):\n"
    "        # pstats.Stats(this) sets this.stats = {} after copying it: keep ours.\n"
    "        if value or not self.__dict__.get('_stats'):\n"
    "            self.__dict__['_stats'] = value\n";

static PyObject *stats_class; /* owned, made on first use; protected by the GIL */

/* Returns a new pyrometer Stats for prof, dirs stripped and sorted by keys
 * (what IPython's -r gives), or NULL with an exception set. */
static PyObject *result_stats(PyObject *prof, PyObject *keys)
{
    if (stats_class == NULL) {
        PyObject *globals = Py_BuildValue("{s:O,s:s}", "__builtins__", PyEval_GetBuiltins(),
                                          "__name__", "pyrometer");
        if (globals == NULL)
            return NULL;
        PyObject *r = PyRun_String(stats_class_src, Py_file_input, globals, globals);
        if (r == NULL) {
            Py_DECREF(globals);
            return NULL;
        }
        Py_DECREF(r);
        stats_class = PyDict_GetItemString(globals, "Stats");
        Py_XINCREF(stats_class);
        Py_DECREF(globals);
        if (stats_class == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "pyrometer: could not make the Stats class");
            return NULL;
        }
    }
    return sorted_stats(PyObject_CallOneArg(stats_class, prof), 1, keys);
}

PyDoc_STRVAR(prun_doc,
             "prun(line, cell, ns, display)\n--\n\n"
             "%prun [-l LIMIT]... [-s KEY]... [-r] [-q] [-T FILE] [-D FILE] [--threads] STATEMENT\n"
             "%%prun [options] [STATEMENT]  (the cell body follows)\n\n"
             "Run the statement under pyrometer's native function profiler and show\n"
             "pstats-style text plus an HTML table, callers/callees and an icicle graph.\n"
             "-l limit rows (int, fraction or regex; repeatable), -s sort key (repeatable,\n"
             "default time), -r return the stats, -q no output,\n"
             "-T write the text to FILE, -D write a marshal dump, --threads profile every thread.\n"
             "-r gives a pstats.Stats (a subclass) as IPython does; pstats.Stats(it) accepts it.");

static PyObject *prun_magic(PyObject *module, PyObject *args)
{
    const char *line;
    PyObject *cell, *ns, *display;
    options_parsed o = OPTIONS_PARSED_INIT;
    PyObject *keys = NULL, *lims = NULL, *pstats = NULL, *src = NULL, *code = NULL, *prof = NULL;
    PyObject *result = NULL, *exc = NULL, *val = NULL, *tb = NULL;
    const char *sys_exit = NULL;

    if (!PyArg_ParseTuple(args, "sOOO:prun", &line, &cell, &ns, &display))
        return NULL;
    if (!PyDict_Check(ns)) {
        PyErr_SetString(PyExc_TypeError, "%prun: the namespace must be a dict");
        return NULL;
    }
    if (cell != Py_None && !PyUnicode_Check(cell)) {
        PyErr_SetString(PyExc_TypeError, "%%prun: the cell must be a str or None");
        return NULL;
    }
    if (options_parse(module, &prun_magic_spec, line, &o) < 0)
        goto done;
    src = options_statement(&o, cell);
    if (src == NULL)
        goto done;
    const char *csrc = PyUnicode_AsUTF8(src);
    if (csrc == NULL)
        goto done;
    if (options_blank(csrc)) {
        options_usage_error(
            module, &prun_magic_spec,
            "nothing to profile; write the statement after the options, e.g. %%prun -s "
            "cumulative f(10)");
        goto done;
    }
    pstats = PyImport_ImportModule("pstats");
    if (pstats == NULL)
        goto done;
    keys = sort_keys(module, &prun_magic_spec, pstats, o.values[OPT_S]);
    if (keys == NULL)
        goto done;
    lims = limits(module, &prun_magic_spec, o.values[OPT_L]);
    if (lims == NULL)
        goto done;
    if (funcprof_is_active()) {
        options_usage_error(
            module, &prun_magic_spec,
            "already profiling: %%prun cannot run inside another %%prun (or while a "
            "pyrometer.Profile is enabled); profile the outer statement only");
        goto done;
    }
    code = Py_CompileString(csrc, "<string>", Py_file_input);
    if (code == NULL)
        goto done;
    prof = funcprof_profile_new(o.values[OPT_THREADS] != NULL, 1);
    if (prof == NULL)
        goto done;
    if (funcprof_enable(prof) < 0)
        goto done;
    PyObject *r = PyEval_EvalCode(code, ns, ns);
    if (funcprof_disable(prof) < 0) {
        Py_XDECREF(r);
        goto done;
    }
    if (r == NULL) {
        PyErr_Fetch(&exc, &val, &tb);
        if (PyErr_GivenExceptionMatches(exc, PyExc_SystemExit)) {
            Py_CLEAR(exc);
            Py_CLEAR(val);
            Py_CLEAR(tb);
            sys_exit = "*** SystemExit exception caught in code being profiled.";
        }
    } else {
        Py_DECREF(r);
    }
    if (prun_report(prof, &o, keys, lims, display, sys_exit) < 0) {
        if (exc == NULL)
            goto done;
        /* The statement's own error wins; the report's is shown as unraisable. */
        PyErr_WriteUnraisable(module);
    }
    if (exc != NULL) {
        PyErr_Restore(exc, val, tb);
        exc = val = tb = NULL;
        goto done;
    }
    result = o.values[OPT_R] != NULL ? result_stats(prof, keys) : Py_NewRef(Py_None);
done:
    options_clear(&o);
    Py_XDECREF(keys);
    Py_XDECREF(lims);
    Py_XDECREF(pstats);
    Py_XDECREF(src);
    Py_XDECREF(code);
    Py_XDECREF(prof);
    return result;
}

/* ---- %pstats ----------------------------------------------------------------- */

PyDoc_STRVAR(pstats_doc,
             "pstats(line, cell, ns, display)\n--\n\n"
             "%pstats FILE [-s KEY]... [-l LIMIT]... [--callers] [--callees]\n\n"
             "Show a pstats dump (from %prun -D, or python -m cProfile -o) like %prun does.\n"
             "Sorted by time unless -s says otherwise; --callers / --callees add pstats'\n"
             "print_callers / print_callees text and open the callers/callees view.");

static PyObject *pstats_magic(PyObject *module, PyObject *args)
{
    const char *line;
    PyObject *cell, *ns, *display;
    options_parsed o = OPTIONS_PARSED_INIT;
    PyObject *keys = NULL, *lims = NULL, *pstats = NULL, *st = NULL, *path = NULL, *order = NULL;
    PyObject *st_text = NULL, *result = NULL;
    report_buf tb = REPORT_BUF_INIT, hb = REPORT_BUF_INIT;
    static const char *const extra[] = {"print_callers", "print_callees"};

    if (!PyArg_ParseTuple(args, "sOOO:pstats", &line, &cell, &ns, &display))
        return NULL;
    if (options_parse(module, &pstats_magic_spec, line, &o) < 0)
        goto done;
    if (PyList_GET_SIZE(o.positional) != 1) {
        options_usage_error(module, &pstats_magic_spec,
                            PyList_GET_SIZE(o.positional) == 0
                                ? "which dump? write %%pstats FILE, e.g. %%pstats profile.prof"
                                : "one dump at a time; write %%pstats FILE [options]");
        goto done;
    }
    pstats = PyImport_ImportModule("pstats");
    if (pstats == NULL)
        goto done;
    keys = sort_keys(module, &pstats_magic_spec, pstats, o.values[OPT_S]);
    if (keys == NULL)
        goto done;
    lims = limits(module, &pstats_magic_spec, o.values[OPT_L]);
    if (lims == NULL)
        goto done;
    path = expand_path(PyList_GET_ITEM(o.positional, 0));
    if (path == NULL)
        goto done;
    st = make_stats(pstats, path, 0, keys);
    if (st == NULL) {
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            PyObject *e, *v, *t;
            PyErr_Fetch(&e, &v, &t);
            PyObject *s = v ? PyObject_Str(v) : NULL;
            options_usage_error(module, &pstats_magic_spec, "cannot read %s: %s",
                                PyUnicode_AsUTF8(path), s ? PyUnicode_AsUTF8(s) : "error");
            Py_XDECREF(s);
            Py_XDECREF(e);
            Py_XDECREF(v);
            Py_XDECREF(t);
        } else if (PyErr_ExceptionMatches(PyExc_ValueError) ||
                   PyErr_ExceptionMatches(PyExc_EOFError) ||
                   PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            options_usage_error(
                module, &pstats_magic_spec,
                "%s is not a pstats dump; make one with %%prun -D FILE or python -m "
                "cProfile -o FILE",
                PyUnicode_AsUTF8(path));
        }
        goto done;
    }
    /* The text as %prun's: dirs stripped, so a dump of library code fits a
     * terminal; the HTML keeps each full path in its title. */
    st_text = make_stats(pstats, path, 1, keys);
    if (st_text == NULL)
        goto done;
    PyObject *text = prun_render_capture(st_text, "print_stats", lims);
    if (text == NULL)
        goto done;
    report_buf_puts(&tb, PyUnicode_AsUTF8(text));
    Py_DECREF(text);
    for (int i = 0; i < 2; i++) {
        if (o.values[i == 0 ? OPT_CALLERS : OPT_CALLEES] == NULL)
            continue;
        text = prun_render_capture(st_text, extra[i], lims);
        if (text == NULL)
            goto done;
        const char *utf8 = PyUnicode_AsUTF8(text);
        if (utf8 == NULL) {
            Py_DECREF(text);
            goto done;
        }
        report_buf_puts(&tb, "\n\n");
        prun_render_fit_calls(&tb, utf8);
        Py_DECREF(text);
    }
    order = prun_render_print_list(st, lims);
    if (order == NULL)
        goto done;
    prun_html_args a = {st,
                        order,
                        o.values[OPT_CALLERS] != NULL || o.values[OPT_CALLEES] != NULL,
                        PyTuple_GET_SIZE(lims) > 0,
                        "%pstats FILE -l 100 shows 100 rows; the text version has them all.",
                        NULL};
    if (prun_render_html(&hb, &a) < 0)
        goto done;
    PyObject *bundle = report_bundle_new(&tb, &hb);
    if (bundle == NULL)
        goto done;
    int rc = call_display(display, bundle);
    Py_DECREF(bundle);
    if (rc < 0)
        goto done;
    result = Py_NewRef(Py_None);
done:
    options_clear(&o);
    Py_XDECREF(keys);
    Py_XDECREF(lims);
    Py_XDECREF(pstats);
    Py_XDECREF(st);
    Py_XDECREF(st_text);
    Py_XDECREF(path);
    Py_XDECREF(order);
    report_buf_free(&tb);
    report_buf_free(&hb);
    return result;
}

static PyMethodDef prun_defs[] = {
    {"prun", prun_magic, METH_VARARGS, prun_doc},
    {"pstats", pstats_magic, METH_VARARGS, pstats_doc},
    {NULL, NULL, 0, NULL},
};

int prun_module_exec(PyObject *module)
{
    static const char *const kinds[] = {"line_cell", "line"};
    if (module_add_magic_help(module, "prun", &prun_magic_spec) < 0 ||
        module_add_magic_help(module, "pstats", &pstats_magic_spec) < 0)
        return -1;
    return module_add_magics(module, prun_defs, kinds);
}
