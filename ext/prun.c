/* prun.c - the %prun, %%prun and %pstats magics.
 *
 * Owns the option specs of each magic (options.c parses them), running the
 * statement under a pyrometer.Profile in the user namespace, and rendering:
 * text/plain through pstats (so the layout is print_stats' own) and
 * text/html (a table with tottime/cumtime bars, a callers/callees view and
 * an inline SVG icicle graph with <title> hover text, no JavaScript).
 */
#include "funcprof.h"
#include "module.h"
#include "options.h"
#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- option specs -------------------------------------------------------- */

/* Indices into the spec tables; -l and -s sit at the same place in both. */
enum { OPT_L, OPT_S, OPT_R, OPT_T, OPT_D, OPT_Q, OPT_THREADS };
enum { OPT_CALLERS = 2, OPT_CALLEES };

static const options_spec prun_specs[] = {
    [OPT_L] = {'l', NULL, OPTIONS_STR, 1, .example = "-l 10, -l 0.25 or -l 'fib'"},
    [OPT_S] = {'s', NULL, OPTIONS_STR, 1, .example = "-s cumulative"},
    [OPT_R] = {'r', NULL, OPTIONS_FLAG},
    [OPT_T] = {'T', NULL, OPTIONS_STR, .example = "-T profile.txt"},
    [OPT_D] = {'D', NULL, OPTIONS_STR, .example = "-D profile.prof"},
    [OPT_Q] = {'q', NULL, OPTIONS_FLAG},
    [OPT_THREADS] = {0, "threads", OPTIONS_FLAG},
};

static const options_spec pstats_specs[] = {
    [OPT_L] = {'l', NULL, OPTIONS_STR, 1, .example = "-l 10"},
    [OPT_S] = {'s', NULL, OPTIONS_STR, 1, .example = "-s cumulative"},
    [OPT_CALLERS] = {0, "callers", OPTIONS_FLAG},
    [OPT_CALLEES] = {0, "callees", OPTIONS_FLAG},
};

static const options_magic prun_magic_spec = {
    "%prun",
    "usage: %prun [-l LIMIT]... [-s KEY]... [-r] [-q] [-T FILE] [-D FILE] [--threads] STATEMENT",
    prun_specs, sizeof prun_specs / sizeof prun_specs[0], 0};

static const options_magic pstats_magic_spec = {
    "%pstats", "usage: %pstats FILE [-s KEY]... [-l LIMIT]... [--callers] [--callees]",
    pstats_specs, sizeof pstats_specs / sizeof pstats_specs[0], 1};

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

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
            PyObject *c = PyObject_CallMethod(re, "compile", "O", s);
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

/* Returns a new pstats.Stats for src (a Profile or a file name), with
 * dirs stripped if strip, sorted by keys; or NULL with an exception set. */
static PyObject *make_stats(PyObject *pstats, PyObject *src, int strip, PyObject *keys)
{
    PyObject *st = PyObject_CallMethod(pstats, "Stats", "O", src);
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

/* Runs st.<method>(*args) with st.stream set to a fresh StringIO; returns
 * the new str it printed (right-stripped), or NULL with an exception set. */
static PyObject *capture(PyObject *st, const char *method, PyObject *args)
{
    PyObject *io = NULL, *sio = NULL, *fn = NULL, *r = NULL, *text = NULL;
    io = PyImport_ImportModule("io");
    if (io == NULL)
        goto done;
    sio = PyObject_CallMethod(io, "StringIO", NULL);
    if (sio == NULL || PyObject_SetAttrString(st, "stream", sio) < 0)
        goto done;
    fn = PyObject_GetAttrString(st, method);
    if (fn == NULL)
        goto done;
    r = PyObject_Call(fn, args, NULL);
    if (r == NULL)
        goto done;
    PyObject *v = PyObject_CallMethod(sio, "getvalue", NULL);
    if (v == NULL)
        goto done;
    text = PyObject_CallMethod(v, "rstrip", NULL);
    Py_DECREF(v);
done:
    Py_XDECREF(io);
    Py_XDECREF(sio);
    Py_XDECREF(fn);
    Py_XDECREF(r);
    return text;
}

/* ---- HTML --------------------------------------------------------------- */

static const char prun_css[] =
    "<style>\n"
    ".pyro-prun .fn{font-weight:600}\n"
    ".pyro-prun .loc,.pyro-prun .dim{color:var(--jp-content-font-color2,#666)}\n"
    ".pyro-prun td.b{padding-left:0;width:64px}\n"
    ".pyro-prun details{margin:4px 0}\n"
    ".pyro-prun summary{cursor:pointer;color:var(--jp-content-font-color2,#555)}\n"
    ".pyro-prun .cc{display:inline-block;vertical-align:top;margin:2px 16px 6px 0}\n"
    ".pyro-prun svg{display:block;max-width:100%}\n"
    ".pyro-prun svg rect{stroke:var(--jp-layout-color0,#fff);stroke-width:0.5}\n"
    ".pyro-prun .err{color:var(--jp-error-color1,#c00)}\n"
    "</style>\n";

/* Matches "<cell-N>" and "<ipython-input-N-hash>": returns N, or -1. */
static long cell_number(const char *file)
{
    const char *p;
    if (strncmp(file, "<cell-", 6) == 0)
        p = file + 6;
    else if (strncmp(file, "<ipython-input-", 15) == 0)
        p = file + 15;
    else
        return -1;
    char *end;
    long n = strtol(p, &end, 10);
    if (end == p || (*end != '>' && *end != '-'))
        return -1;
    return n;
}

/* Writes a function's name for HTML: a cell-defined function as
 * "name In [N]:line", a file's as "name file.py:line" (full path in the
 * title), a builtin as pstats does, "{built-in method builtins.len}". */
static void html_name(report_buf *b, PyObject *label)
{
    const char *file = PyUnicode_AsUTF8(PyTuple_GET_ITEM(label, 0));
    long line = PyLong_AsLong(PyTuple_GET_ITEM(label, 1));
    const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(label, 2));
    if (file == NULL || name == NULL) {
        PyErr_Clear();
        report_buf_puts(b, "?");
        return;
    }
    if (strcmp(file, "~") == 0 && line == 0) {
        size_t n = strlen(name);
        report_buf_puts(b, "<span class=\"dim\">");
        if (n >= 2 && name[0] == '<' && name[n - 1] == '>') {
            report_buf_puts(b, "{");
            report_buf_html(b, name + 1, n - 2);
            report_buf_puts(b, "}");
        } else {
            report_buf_html(b, name, n);
        }
        report_buf_puts(b, "</span>");
        return;
    }
    report_buf_puts(b, "<span class=\"fn\">");
    report_buf_html(b, name, strlen(name));
    report_buf_puts(b, "</span> <span class=\"loc\"");
    long cell = cell_number(file);
    if (cell >= 0) {
        report_buf_printf(b, ">In [%ld]:%ld</span>", cell, line);
        return;
    }
    if (strcmp(file, "<string>") == 0) {
        report_buf_printf(b, ">the profiled statement</span>");
        return;
    }
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    report_buf_puts(b, " title=\"");
    report_buf_html(b, file, strlen(file));
    report_buf_puts(b, "\">");
    report_buf_html(b, base, strlen(base));
    report_buf_printf(b, ":%ld</span>", line);
}

/* Plain-text name for SVG titles and labels. */
static void text_name(report_buf *b, PyObject *label, int with_loc)
{
    const char *file = PyUnicode_AsUTF8(PyTuple_GET_ITEM(label, 0));
    long line = PyLong_AsLong(PyTuple_GET_ITEM(label, 1));
    const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(label, 2));
    if (file == NULL || name == NULL) {
        PyErr_Clear();
        report_buf_puts(b, "?");
        return;
    }
    if (strcmp(file, "~") == 0 && line == 0) {
        size_t n = strlen(name);
        if (n >= 2 && name[0] == '<' && name[n - 1] == '>')
            report_buf_html(b, name + 1, n - 2);
        else
            report_buf_html(b, name, n);
        return;
    }
    report_buf_html(b, name, strlen(name));
    if (!with_loc)
        return;
    long cell = cell_number(file);
    if (cell >= 0) {
        report_buf_printf(b, " (In [%ld]:%ld)", cell, line);
    } else if (strcmp(file, "<string>") == 0) {
        report_buf_puts(b, " (the profiled statement)");
    } else {
        report_buf_puts(b, " (");
        report_buf_html(b, file, strlen(file));
        report_buf_printf(b, ":%ld)", line);
    }
}

/* Appends a duration in human units. */
static void fmt_time(report_buf *b, double s)
{
    if (s >= 1.0)
        report_buf_printf(b, "%.3f s", s);
    else if (s >= 1e-3)
        report_buf_printf(b, "%.3f ms", s * 1e3);
    else if (s > 0)
        report_buf_printf(b, "%.2f \u00b5s", s * 1e6);
    else
        report_buf_puts(b, "0");
}

typedef struct {
    PyObject *label; /* borrowed */
    double cc, nc, tt, ct;
    PyObject *callers; /* borrowed */
} prow;

static int get_row(PyObject *stats, PyObject *label, prow *r)
{
    PyObject *v = PyDict_GetItemWithError(stats, label);
    if (v == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "missing stats row");
        return -1;
    }
    if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 5) {
        PyErr_SetString(PyExc_ValueError, "stats rows must be (cc, nc, tt, ct, callers)");
        return -1;
    }
    r->label = label;
    r->cc = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 0));
    r->nc = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 1));
    r->tt = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 2));
    r->ct = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 3));
    r->callers = PyTuple_GET_ITEM(v, 4);
    if (!PyDict_Check(r->callers)) {
        PyErr_SetString(PyExc_ValueError, "stats callers must be a dict");
        return -1;
    }
    return PyErr_Occurred() ? -1 : 0;
}

static void ncalls_cell(report_buf *b, double nc, double cc)
{
    if (nc != cc)
        report_buf_printf(b, "%.0f/%.0f", nc, cc);
    else
        report_buf_printf(b, "%.0f", nc);
}

/* Appends one caller/callee sub-table. entries: list of (label, value)
 * where value is (nc, cc, tt, ct) or an int (old-style dumps). */
static int html_call_table(report_buf *b, const char *title, PyObject *pairs)
{
    Py_ssize_t n = PyList_GET_SIZE(pairs);
    report_buf_printf(b, "<div class=\"cc\"><div class=\"hdr\">%s</div>", title);
    if (n == 0) {
        report_buf_puts(b, "<div class=\"dim\">(none)</div></div>");
        return 0;
    }
    report_buf_puts(b, "<table><tr><th>ncalls</th><th>tottime</th><th>cumtime</th><th "
                       "class=\"name\">function</th></tr>");
    for (Py_ssize_t i = 0; i < n && i < 40; i++) {
        PyObject *pair = PyList_GET_ITEM(pairs, i);
        PyObject *label = PyTuple_GET_ITEM(pair, 0), *v = PyTuple_GET_ITEM(pair, 1);
        report_buf_puts(b, "<tr><td>");
        if (PyTuple_Check(v) && PyTuple_GET_SIZE(v) == 4) {
            double nc = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 0)),
                   cc = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 1));
            double tt = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 2)),
                   ct = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 3));
            if (PyErr_Occurred())
                return -1;
            ncalls_cell(b, nc, cc);
            report_buf_puts(b, "</td><td>");
            fmt_time(b, tt);
            report_buf_puts(b, "</td><td>");
            fmt_time(b, ct);
        } else {
            double nc = PyFloat_AsDouble(v);
            if (PyErr_Occurred())
                return -1;
            report_buf_printf(b, "%.0f</td><td></td><td>", nc);
        }
        report_buf_puts(b, "</td><td class=\"name\">");
        html_name(b, label);
        report_buf_puts(b, "</td></tr>");
    }
    if (n > 40)
        report_buf_printf(b, "<tr><td colspan=\"4\" class=\"dim\">\u2026 %zd more</td></tr>",
                          n - 40);
    report_buf_puts(b, "</table></div>");
    return 0;
}

/* Sorts a list of (label, value) pairs by cumtime, largest first. */
static int sort_pairs(PyObject *pairs)
{
    PyObject *op = PyImport_ImportModule("operator");
    if (op == NULL)
        return -1;
    /* value[3] is cumtime for tuples; ints sort as themselves. */
    PyObject *key = PyObject_CallMethod(op, "itemgetter", "i", 1);
    Py_DECREF(op);
    if (key == NULL)
        return -1;
    PyObject *kw = Py_BuildValue("{s:O,s:O}", "key", key, "reverse", Py_True);
    Py_DECREF(key);
    if (kw == NULL)
        return -1;
    PyObject *sort = PyObject_GetAttrString(pairs, "sort");
    PyObject *args = PyTuple_New(0);
    PyObject *r = sort && args ? PyObject_Call(sort, args, kw) : NULL;
    Py_XDECREF(sort);
    Py_XDECREF(args);
    Py_DECREF(kw);
    if (r == NULL) {
        PyErr_Clear(); /* mixed value kinds: keep the dict's order */
        return 0;
    }
    Py_DECREF(r);
    return 0;
}

/* callees[label] = list of (callee, edge value), from every row's callers. */
static PyObject *invert_callers(PyObject *stats)
{
    PyObject *callees = PyDict_New(), *label, *v;
    Py_ssize_t pos = 0;
    if (callees == NULL)
        return NULL;
    while (PyDict_Next(stats, &pos, &label, &v)) {
        if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 5 || !PyDict_Check(PyTuple_GET_ITEM(v, 4)))
            continue;
        PyObject *caller, *ev;
        Py_ssize_t p2 = 0;
        while (PyDict_Next(PyTuple_GET_ITEM(v, 4), &p2, &caller, &ev)) {
            PyObject *lst = PyDict_GetItemWithError(callees, caller);
            if (lst == NULL) {
                if (PyErr_Occurred())
                    goto error;
                lst = PyList_New(0);
                if (lst == NULL || PyDict_SetItem(callees, caller, lst) < 0) {
                    Py_XDECREF(lst);
                    goto error;
                }
                Py_DECREF(lst);
            }
            PyObject *pair = PyTuple_Pack(2, label, ev);
            if (pair == NULL || PyList_Append(lst, pair) < 0) {
                Py_XDECREF(pair);
                goto error;
            }
            Py_DECREF(pair);
        }
    }
    return callees;
error:
    Py_DECREF(callees);
    return NULL;
}

/* Returns the cumtime of an edge value (nc, cc, tt, ct); 0 for old dumps. */
static double edge_ct(PyObject *v)
{
    if (PyTuple_Check(v) && PyTuple_GET_SIZE(v) == 4) {
        double d = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 3));
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return d;
    }
    return 0;
}

/* ---- the icicle graph ---------------------------------------------------- */

#define SVG_W         960.0
#define SVG_ROW       18
#define SVG_MAX_DEPTH 48
#define SVG_MAX_RECTS 2500

typedef struct {
    report_buf *b;
    PyObject *stats;   /* borrowed */
    PyObject *callees; /* borrowed */
    PyObject *path;    /* owned set: labels on the current path */
    double total;
    int rects;
    int max_depth;
} icicle;

static unsigned int label_hue(PyObject *label)
{
    const char *file = PyUnicode_AsUTF8(PyTuple_GET_ITEM(label, 0));
    unsigned int h = 2166136261u;
    if (file == NULL) {
        PyErr_Clear();
        return 30;
    }
    for (const char *p = file; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % 360;
}

static int icicle_node(icicle *g, PyObject *label, double x, double w, double value, int depth)
{
    if (w < 0.4 || depth >= SVG_MAX_DEPTH || g->rects >= SVG_MAX_RECTS)
        return 0;
    prow row;
    if (get_row(g->stats, label, &row) < 0)
        return -1;
    const char *file = PyUnicode_AsUTF8(PyTuple_GET_ITEM(label, 0));
    if (file == NULL)
        return -1;
    int builtin = strcmp(file, "~") == 0;
    double y = depth * SVG_ROW;
    g->rects++;
    if (depth + 1 > g->max_depth)
        g->max_depth = depth + 1;
    report_buf_printf(g->b, "<g><title>");
    text_name(g->b, label, 1);
    report_buf_printf(g->b, "\ncumtime here ");
    fmt_time(g->b, value);
    report_buf_printf(g->b, " (%.1f%%)\nin all: ", g->total > 0 ? value / g->total * 100 : 0.0);
    ncalls_cell(g->b, row.nc, row.cc);
    report_buf_puts(g->b, " calls, tottime ");
    fmt_time(g->b, row.tt);
    report_buf_puts(g->b, ", cumtime ");
    fmt_time(g->b, row.ct);
    if (builtin)
        report_buf_printf(g->b,
                          "</title><rect x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%d\" "
                          "fill=\"hsl(0,0%%,76%%)\"/>",
                          x, y, w, SVG_ROW - 1);
    else
        report_buf_printf(g->b,
                          "</title><rect x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%d\" "
                          "fill=\"hsl(%u,75%%,72%%)\"/>",
                          x, y, w, SVG_ROW - 1, label_hue(label));
    int chars = (int)((w - 6) / 6.2);
    if (chars >= 3) {
        report_buf b2 = REPORT_BUF_INIT;
        text_name(&b2, label, 0);
        report_buf_printf(g->b, "<text x=\"%.2f\" y=\"%.0f\">", x + 3, y + SVG_ROW - 5);
        /* b2 holds HTML-escaped text: cut at a character boundary, not
         * inside an entity. */
        int shown = 0;
        size_t i = 0;
        while (i < b2.len && shown < chars) {
            size_t j = i + 1;
            if (b2.data[i] == '&') {
                while (j < b2.len && b2.data[j - 1] != ';')
                    j++;
            } else {
                while (j < b2.len && ((unsigned char)b2.data[j] & 0xC0) == 0x80)
                    j++;
            }
            if (shown == chars - 1 && j < b2.len) {
                report_buf_puts(g->b, "\u2026");
                shown++;
                break;
            }
            report_buf_append(g->b, b2.data + i, j - i);
            shown++;
            i = j;
        }
        report_buf_free(&b2);
        report_buf_puts(g->b, "</text>");
    }
    report_buf_puts(g->b, "</g>\n");

    PyObject *kids = PyDict_GetItemWithError(g->callees, label);
    if (kids == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (PySet_Add(g->path, label) < 0)
        return -1;
    /* The children's share of this node, from their edge cumtimes as a
     * fraction of this function's cumtime over all its calls. */
    double sum = 0, own_ct = row.ct > 0 ? row.ct : 1e-300;
    Py_ssize_t n = PyList_GET_SIZE(kids);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(kids, i);
        int on_path = PySet_Contains(g->path, PyTuple_GET_ITEM(pair, 0));
        if (on_path < 0)
            return -1;
        if (!on_path)
            sum += edge_ct(PyTuple_GET_ITEM(pair, 1));
    }
    double scale = sum > own_ct ? own_ct / sum : 1.0;
    double cx = x;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(kids, i);
        PyObject *kid = PyTuple_GET_ITEM(pair, 0);
        int on_path = PySet_Contains(g->path, kid);
        if (on_path < 0)
            return -1;
        if (on_path)
            continue;
        double frac = edge_ct(PyTuple_GET_ITEM(pair, 1)) / own_ct * scale;
        double kw = w * frac;
        if (icicle_node(g, kid, cx, kw, value * frac, depth + 1) < 0)
            return -1;
        cx += kw;
    }
    if (PySet_Discard(g->path, label) < 0)
        return -1;
    return 0;
}

/* Appends the icicle graph (roots: functions nobody called). */
static int html_icicle(report_buf *b, PyObject *stats, PyObject *callees)
{
    report_buf body = REPORT_BUF_INIT;
    icicle g = {&body, stats, callees, NULL, 0, 0, 0};
    PyObject *roots = PyList_New(0), *label, *v;
    Py_ssize_t pos = 0;
    int rc = -1;

    g.path = PySet_New(NULL);
    if (roots == NULL || g.path == NULL)
        goto done;
    while (PyDict_Next(stats, &pos, &label, &v)) {
        prow row;
        if (get_row(stats, label, &row) < 0)
            goto done;
        if (PyDict_GET_SIZE(row.callers) == 0 && row.ct > 0) {
            PyObject *pair = Py_BuildValue("(Od)", label, row.ct);
            if (pair == NULL || PyList_Append(roots, pair) < 0) {
                Py_XDECREF(pair);
                goto done;
            }
            Py_DECREF(pair);
            g.total += row.ct;
        }
    }
    if (g.total <= 0) {
        rc = 0;
        goto done;
    }
    if (sort_pairs(roots) < 0)
        goto done;
    double x = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(roots); i++) {
        PyObject *pair = PyList_GET_ITEM(roots, i);
        double ct = PyFloat_AsDouble(PyTuple_GET_ITEM(pair, 1));
        double w = SVG_W * ct / g.total;
        if (icicle_node(&g, PyTuple_GET_ITEM(pair, 0), x, w, ct, 0) < 0)
            goto done;
        x += w;
    }
    report_buf_puts(
        b, "<details open><summary>Call graph: an icicle of cumulative time, callers above "
           "callees (hover a box for its times)</summary>\n");
    report_buf_printf(b,
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%d\" "
                      "viewBox=\"0 0 %.0f %d\" "
                      "font-family=\"var(--jp-code-font-family,monospace)\" role=\"img\">\n",
                      SVG_W, g.max_depth * SVG_ROW, SVG_W, g.max_depth * SVG_ROW);
    report_buf_append(b, body.data ? body.data : "", body.len);
    report_buf_puts(b, "</svg>");
    if (g.rects >= SVG_MAX_RECTS)
        report_buf_printf(b, "<div class=\"dim\">(the graph stops at %d boxes)</div>",
                          SVG_MAX_RECTS);
    report_buf_puts(b, "</details>\n");
    rc = 0;
done:
    Py_XDECREF(roots);
    Py_XDECREF(g.path);
    report_buf_free(&body);
    return rc;
}

/* ---- the whole HTML report ------------------------------------------------ */

#define HTML_MAX_ROWS 200

typedef struct {
    PyObject *st;     /* borrowed pstats.Stats, sorted */
    PyObject *order;  /* borrowed list of labels to show, in order */
    int open_callers; /* open the callers/callees view */
    const char *note; /* extra line (messages), or NULL */
} html_args;

static int html_report(report_buf *b, const html_args *a)
{
    PyObject *stats = NULL, *callees = NULL, *sort_type = NULL;
    double total_tt = 0, total_calls = 0, prim_calls = 0, max_tt = 0, max_ct = 0;
    int rc = -1;

    stats = PyObject_GetAttrString(a->st, "stats");
    if (stats == NULL || !PyDict_Check(stats)) {
        if (stats != NULL)
            PyErr_SetString(PyExc_TypeError, "pstats.Stats.stats must be a dict");
        goto done;
    }
    PyObject *v;
#define NUM_ATTR(dst, name)                                                                        \
    v = PyObject_GetAttrString(a->st, name);                                                       \
    if (v == NULL)                                                                                 \
        goto done;                                                                                 \
    dst = PyFloat_AsDouble(v);                                                                     \
    Py_DECREF(v);                                                                                  \
    if (PyErr_Occurred())                                                                          \
        goto done;
    NUM_ATTR(total_tt, "total_tt")
    NUM_ATTR(total_calls, "total_calls")
    NUM_ATTR(prim_calls, "prim_calls")
#undef NUM_ATTR
    sort_type = PyObject_GetAttrString(a->st, "sort_type");
    if (sort_type == NULL)
        goto done;
    const char *sort_txt = PyUnicode_Check(sort_type) ? PyUnicode_AsUTF8(sort_type) : NULL;
    if (sort_txt == NULL) {
        PyErr_Clear();
        sort_txt = "?";
    }
    callees = invert_callers(stats);
    if (callees == NULL)
        goto done;

    Py_ssize_t listed = PyList_GET_SIZE(a->order);
    Py_ssize_t n = listed < HTML_MAX_ROWS ? listed : HTML_MAX_ROWS; /* the text has them all */
    for (Py_ssize_t i = 0; i < n; i++) {
        prow r;
        if (get_row(stats, PyList_GET_ITEM(a->order, i), &r) < 0)
            goto done;
        if (r.tt > max_tt)
            max_tt = r.tt;
        if (r.ct > max_ct)
            max_ct = r.ct;
    }
    report_buf_puts(b, report_css);
    report_buf_puts(b, prun_css);
    report_buf_puts(b, "<div class=\"pyro pyro-prun\">\n<div class=\"hdr\">");
    report_buf_printf(b, "%.0f function calls", total_calls);
    if (total_calls != prim_calls)
        report_buf_printf(b, " (%.0f primitive calls)", prim_calls);
    report_buf_puts(b, " in ");
    fmt_time(b, total_tt);
    report_buf_puts(b, " \u00b7 ordered by ");
    report_buf_html(b, sort_txt, strlen(sort_txt));
    if (listed != PyDict_GET_SIZE(stats))
        report_buf_printf(b, " \u00b7 showing %zd of %zd functions", listed,
                          PyDict_GET_SIZE(stats));
    report_buf_puts(b, "</div>\n");
    report_buf_puts(
        b, "<table>\n<tr><th>ncalls</th><th>tottime</th><th></th><th>percall</th>"
           "<th>cumtime</th><th></th><th>percall</th><th class=\"name\">function</th></tr>\n");
    for (Py_ssize_t i = 0; i < n; i++) {
        prow r;
        if (get_row(stats, PyList_GET_ITEM(a->order, i), &r) < 0)
            goto done;
        report_buf_puts(b, "<tr><td>");
        ncalls_cell(b, r.nc, r.cc);
        report_buf_puts(b, "</td><td>");
        fmt_time(b, r.tt);
        report_buf_printf(
            b, "</td><td class=\"b\"><span class=\"bar\" style=\"width:%.1fpx\"></span></td><td>",
            max_tt > 0 ? 60.0 * r.tt / max_tt : 0.0);
        if (r.nc > 0)
            fmt_time(b, r.tt / r.nc);
        report_buf_puts(b, "</td><td>");
        fmt_time(b, r.ct);
        report_buf_printf(
            b, "</td><td class=\"b\"><span class=\"bar2\" style=\"width:%.1fpx\"></span></td><td>",
            max_ct > 0 ? 60.0 * r.ct / max_ct : 0.0);
        if (r.cc > 0)
            fmt_time(b, r.ct / r.cc);
        report_buf_puts(b, "</td><td class=\"name\">");
        html_name(b, r.label);
        report_buf_puts(b, "</td></tr>\n");
    }
    if (listed > n)
        report_buf_printf(
            b,
            "<tr><td colspan=\"8\" class=\"dim name\">\u2026 %zd more rows in the text "
            "version (narrow them with -l)</td></tr>\n",
            listed - n);
    report_buf_puts(b, "</table>\n");

    /* Callers and callees of the listed functions (the first 30). */
    report_buf_printf(b, "<details%s><summary>Callers and callees</summary>\n",
                      a->open_callers ? " open" : "");
    for (Py_ssize_t i = 0; i < n && i < 30; i++) {
        prow r;
        PyObject *label = PyList_GET_ITEM(a->order, i);
        if (get_row(stats, label, &r) < 0)
            goto done;
        PyObject *callers = PyDict_Items(r.callers);
        if (callers == NULL || sort_pairs(callers) < 0) {
            Py_XDECREF(callers);
            goto done;
        }
        PyObject *kids = PyDict_GetItemWithError(callees, label);
        if (kids == NULL && PyErr_Occurred()) {
            Py_DECREF(callers);
            goto done;
        }
        PyObject *kidlist = kids ? PyList_GetSlice(kids, 0, PyList_GET_SIZE(kids)) : PyList_New(0);
        if (kidlist == NULL || sort_pairs(kidlist) < 0) {
            Py_DECREF(callers);
            Py_XDECREF(kidlist);
            goto done;
        }
        report_buf_puts(b, "<div style=\"margin-top:6px\">");
        html_name(b, label);
        report_buf_puts(b, "</div>");
        int bad = html_call_table(b, "called by", callers) < 0 ||
                  html_call_table(b, "calls", kidlist) < 0;
        Py_DECREF(callers);
        Py_DECREF(kidlist);
        if (bad)
            goto done;
    }
    report_buf_puts(b, "</details>\n");
    if (html_icicle(b, stats, callees) < 0)
        goto done;
    if (a->note != NULL) {
        report_buf_puts(b, "<div class=\"hdr\">");
        report_buf_html(b, a->note, strlen(a->note));
        report_buf_puts(b, "</div>\n");
    }
    report_buf_puts(b, "</div>\n");
    rc = 0;
done:
    Py_XDECREF(stats);
    Py_XDECREF(callees);
    Py_XDECREF(sort_type);
    return rc;
}

/* Returns a new list: the labels st would print for limits lims. */
static PyObject *print_list(PyObject *st, PyObject *lims)
{
    PyObject *io = PyImport_ImportModule("io"), *sio = NULL, *old = NULL, *r = NULL, *list = NULL;
    if (io == NULL)
        return NULL;
    sio = PyObject_CallMethod(io, "StringIO", NULL);
    Py_DECREF(io);
    if (sio == NULL)
        return NULL;
    old = PyObject_GetAttrString(st, "stream");
    if (old == NULL || PyObject_SetAttrString(st, "stream", sio) < 0)
        goto done;
    PyObject *lst = PySequence_List(lims);
    if (lst == NULL)
        goto done;
    r = PyObject_CallMethod(st, "get_print_list", "O", lst);
    Py_DECREF(lst);
    if (r == NULL)
        goto done;
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
        PyErr_SetString(PyExc_TypeError, "pstats.Stats.get_print_list() changed shape");
        goto done;
    }
    list = PySequence_List(PyTuple_GET_ITEM(r, 1));
done:
    if (old != NULL && PyObject_SetAttrString(st, "stream", old) < 0 && list != NULL)
        Py_CLEAR(list);
    Py_XDECREF(old);
    Py_XDECREF(sio);
    Py_XDECREF(r);
    return list;
}

/* ---- files -------------------------------------------------------------- */

/* Returns a new str: os.path.expanduser(path). */
static PyObject *expand_path(PyObject *path)
{
    PyObject *os = PyImport_ImportModule("os.path");
    if (os == NULL)
        return NULL;
    PyObject *r = PyObject_CallMethod(os, "expanduser", "O", path);
    Py_DECREF(os);
    return r;
}

static int write_text_file(PyObject *path, PyObject *text)
{
    PyObject *fs = NULL;
    Py_ssize_t n;
    const char *data = PyUnicode_AsUTF8AndSize(text, &n);
    if (data == NULL || !PyUnicode_FSConverter(path, &fs))
        return -1;
    FILE *f = fopen(PyBytes_AS_STRING(fs), "wb");
    if (f == NULL) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        Py_DECREF(fs);
        return -1;
    }
    int bad = fwrite(data, 1, (size_t)n, f) != (size_t)n;
    if (fclose(f) != 0 || bad) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        Py_DECREF(fs);
        return -1;
    }
    Py_DECREF(fs);
    return 0;
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
        report_buf_puts(&hb, report_css);
        report_buf_puts(&hb, "<div class=\"pyro\"><div class=\"hdr\">0 function calls</div></div>");
    } else {
        text = capture(st, "print_stats", lims);
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
        PyObject *r = PyObject_CallMethod(prof, "dump_stats", "O", path);
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
        int bad = body == NULL || write_text_file(path, body) < 0;
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
        report_buf_puts(&hb, report_css);
        report_buf_puts(&hb, "<div class=\"pyro\"><div class=\"hdr\">");
        report_buf_html(&hb, notes.data, notes.len);
        report_buf_puts(&hb, "</div></div>");
    } else if (st != NULL) {
        /* HTML from the unstripped stats, so full paths stay in the titles. */
        st_full = make_stats(pstats, prof, 0, keys);
        if (st_full == NULL)
            goto done;
        order = print_list(st_full, lims);
        if (order == NULL)
            goto done;
        html_args a = {st_full, order, 0, notes.len ? notes.data : NULL};
        if (html_report(&hb, &a) < 0)
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
    PyObject *st = PyObject_CallOneArg(stats_class, prof);
    if (st == NULL)
        return NULL;
    PyObject *r = PyObject_CallMethod(st, "strip_dirs", NULL);
    if (r == NULL)
        goto error;
    Py_DECREF(r);
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

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (!is_space(*s))
            return 0;
    return 1;
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
    /* %%prun: the statement on the first line, then the cell (line numbers
     * of the cell are kept when the first line has no statement). */
    if (cell != Py_None && is_blank(o.rest))
        src = Py_NewRef(cell);
    else if (cell != Py_None)
        src = PyUnicode_FromFormat("%s\n%U", o.rest, cell);
    else
        src = PyUnicode_FromString(o.rest);
    if (src == NULL)
        goto done;
    const char *csrc = PyUnicode_AsUTF8(src);
    if (csrc == NULL)
        goto done;
    if (is_blank(csrc)) {
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
    PyObject *result = NULL;
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
    PyObject *text = capture(st, "print_stats", lims);
    if (text == NULL)
        goto done;
    report_buf_puts(&tb, PyUnicode_AsUTF8(text));
    Py_DECREF(text);
    for (int i = 0; i < 2; i++) {
        if (o.values[i == 0 ? OPT_CALLERS : OPT_CALLEES] == NULL)
            continue;
        text = capture(st, extra[i], lims);
        if (text == NULL)
            goto done;
        report_buf_puts(&tb, "\n\n");
        report_buf_puts(&tb, PyUnicode_AsUTF8(text));
        Py_DECREF(text);
    }
    order = print_list(st, lims);
    if (order == NULL)
        goto done;
    html_args a = {st, order, o.values[OPT_CALLERS] != NULL || o.values[OPT_CALLEES] != NULL, NULL};
    if (html_report(&hb, &a) < 0)
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
    return module_add_magics(module, prun_defs, kinds);
}
