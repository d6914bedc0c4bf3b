/* funcprof/render.c - the text and HTML of %prun and %pstats.
 *
 * Owns the rendering of a sorted pstats.Stats: its text through pstats'
 * own printers (captured from st.stream), and the HTML report: a table with
 * tottime/cumtime bars, the callers/callees view and an inline SVG icicle
 * graph with <title> hover text, no JavaScript. Reads stats, never changes
 * what was profiled.
 */
#include "funcprof/render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PyObject *prun_render_capture(PyObject *st, const char *method, PyObject *args)
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

/* ---- text ---------------------------------------------------------------- */

/* Columns of the n bytes of UTF-8 at s (one a code point). */
static size_t utf8_cols(const char *s, size_t n)
{
    size_t cols = 0;
    for (size_t i = 0; i < n; i++)
        cols += ((unsigned char)s[i] & 0xC0) != 0x80;
    return cols;
}

/* The byte offset of column col in the line s of n bytes (n past its end). */
static size_t utf8_offset(const char *s, size_t n, size_t col)
{
    size_t i = 0;
    for (size_t c = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80 && c++ == col)
            return i;
    }
    return n;
}

void prun_render_fit_calls(report_buf *b, const char *text)
{
    /* The heading "Function<spaces>was called by..." (or "called...") gives
     * the name column's width. */
    const char *head = strstr(text, "Function ");
    const char *eol = head ? strchr(head, '\n') : NULL;
    const char *title = head ? strstr(head, "was called by...") : NULL;
    if (title == NULL || (eol != NULL && title > eol))
        title = head ? strstr(head, "called...") : NULL;
    if (head == NULL || title == NULL || (eol != NULL && title > eol) ||
        (head != text && head[-1] != '\n')) {
        report_buf_puts(b, text);
        return;
    }
    size_t width = utf8_cols(head, (size_t)(title - head)), widest = 0;
    for (const char *l = head; *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        size_t c = utf8_cols(l, n);
        widest = c > widest ? c : widest;
        l += n + (e != NULL);
    }
    size_t excess = widest > REPORT_TEXT_COLS ? widest - REPORT_TEXT_COLS : 0;
    size_t narrow = width > excess + 16 ? width - excess : (width < 16 ? width : 16);
    report_buf_append(b, text, (size_t)(head - text));
    for (const char *l = head; *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        size_t cut = utf8_offset(l, n, width); /* name column | the rest */
        size_t name = cut;
        while (name > 0 && l[name - 1] == ' ')
            name--;
        size_t name_cols = utf8_cols(l, name);
        if (n == 0 || narrow == width) {
            report_buf_append(b, l, n);
        } else {
            report_buf_append(b, l, name);
            if (name_cols > narrow) { /* its own line; the rest below, aligned */
                report_buf_puts(b, "\n");
                name_cols = 0;
            }
            for (size_t k = name_cols; k < narrow; k++)
                report_buf_puts(b, " ");
            report_buf_append(b, l + cut, n - cut);
        }
        if (e != NULL)
            report_buf_puts(b, "\n");
        l += n + (e != NULL);
    }
}

/* ---- HTML --------------------------------------------------------------- */

/* Unpacks a pstats label (file, line, name). Returns 1 for a builtin
 * ("~", 0, "<built-in method ...>"), 0 for Python code, or -1 after
 * appending "?" to b when the label cannot be read. */
static int label_parts(report_buf *b, PyObject *label, const char **file, long *line,
                       const char **name)
{
    *file = PyUnicode_AsUTF8(PyTuple_GET_ITEM(label, 0));
    *line = PyLong_AsLong(PyTuple_GET_ITEM(label, 1));
    *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(label, 2));
    if (*file == NULL || *name == NULL) {
        PyErr_Clear();
        report_buf_puts(b, "?");
        return -1;
    }
    return strcmp(*file, "~") == 0 && *line == 0;
}

/* Writes a function's name for HTML: a cell-defined function as
 * "name In [N]:line", a file's as "name file.py:line" (full path in the
 * title), a builtin as pstats does, "{built-in method builtins.len}". */
static void html_name(report_buf *b, PyObject *label)
{
    const char *file, *name;
    long line;
    int builtin = label_parts(b, label, &file, &line, &name);
    if (builtin < 0)
        return;
    if (builtin) {
        size_t n = strlen(name);
        report_buf_puts(b, "<span class=\"dim\" style=\"" REPORT_DIM "\">");
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
    report_buf_puts(b, "<span class=\"fn\" style=\"font-weight:600\">");
    report_buf_html(b, name, strlen(name));
    report_buf_puts(b, "</span> <span class=\"loc\" style=\"" REPORT_DIM "\"");
    long cell = report_cell_number(file);
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
    const char *file, *name;
    long line;
    int builtin = label_parts(b, label, &file, &line, &name);
    if (builtin < 0)
        return;
    if (builtin) {
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
    long cell = report_cell_number(file);
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

#define CC_FUNCS 10 /* functions in the callers/callees view */
#define CC_ROWS  8  /* callers (and callees) listed for each */

/* Appends one caller/callee sub-table. entries: list of (label, value)
 * where value is (nc, cc, tt, ct) or an int (old-style dumps). */
static int html_call_table(report_buf *b, const char *title, PyObject *pairs)
{
    Py_ssize_t n = PyList_GET_SIZE(pairs);
    report_buf_printf(b,
                      "<div class=\"cc\" style=\"display:inline-block;vertical-align:top;"
                      "margin:2px 16px 6px 0\"><div style=\"" REPORT_DIM "\">%s</div>",
                      title);
    if (n == 0) {
        report_buf_puts(b, "<div style=\"" REPORT_DIM "\">(none)</div></div>");
        return 0;
    }
    report_buf_puts(b,
                    "<table style=\"" REPORT_TABLE "\"><tr><th style=\"" REPORT_TH
                    "\">ncalls</th><th style=\"" REPORT_TH "\">tottime</th><th style=\"" REPORT_TH
                    "\">cumtime</th><th style=\"" REPORT_TH_L "\">function</th></tr>");
    for (Py_ssize_t i = 0; i < n && i < CC_ROWS; i++) {
        PyObject *pair = PyList_GET_ITEM(pairs, i);
        PyObject *label = PyTuple_GET_ITEM(pair, 0), *v = PyTuple_GET_ITEM(pair, 1);
        report_buf_puts(b, "<tr><td style=\"" REPORT_TD "\">");
        if (PyTuple_Check(v) && PyTuple_GET_SIZE(v) == 4) {
            double nc = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 0)),
                   cc = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 1));
            double tt = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 2)),
                   ct = PyFloat_AsDouble(PyTuple_GET_ITEM(v, 3));
            if (PyErr_Occurred())
                return -1;
            ncalls_cell(b, nc, cc);
            report_buf_puts(b, "</td><td style=\"" REPORT_TD "\">");
            fmt_time(b, tt);
            report_buf_puts(b, "</td><td style=\"" REPORT_TD "\">");
            fmt_time(b, ct);
        } else {
            double nc = PyFloat_AsDouble(v);
            if (PyErr_Occurred())
                return -1;
            report_buf_printf(
                b, "%.0f</td><td style=\"" REPORT_TD "\"></td><td style=\"" REPORT_TD "\">", nc);
        }
        report_buf_puts(b, "</td><td style=\"" REPORT_TD_L "\">");
        html_name(b, label);
        report_buf_puts(b, "</td></tr>");
    }
    if (n > CC_ROWS)
        report_buf_printf(b,
                          "<tr><td colspan=\"4\" style=\"" REPORT_TD_L ";" REPORT_DIM
                          "\">\u2026 %zd more (%%pstats --callers / --callees lists all)</td></tr>",
                          n - CC_ROWS);
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
#define SVG_MAX_DEPTH 32
#define SVG_MAX_RECTS 800
#define SVG_CHAR_W    6.1 /* an 11px monospace character */

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
    if (w < 1.0 || depth >= SVG_MAX_DEPTH || g->rects >= SVG_MAX_RECTS)
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
    report_buf_printf(
        g->b, "<rect x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%d\" fill=\"hsl(%u,%s)\"/>", x,
        y, w > 1.2 ? w - 0.6 : w, SVG_ROW - 1, builtin ? 0 : label_hue(label),
        builtin ? "0%,78%" : "75%,74%");
    int chars = (int)((w - 6) / SVG_CHAR_W);
    if (chars >= 3) {
        report_buf b2 = REPORT_BUF_INIT;
        text_name(&b2, label, 0);
        /* With room to spare, the share of the whole: "fib 41%". */
        if ((size_t)chars >= b2.len + 5 && g->total > 0)
            report_buf_printf(&b2, " %.0f%%", value / g->total * 100);
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
    report_buf_puts(g->b, "\n");

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
    if (PyList_GET_SIZE(roots) == 0) {
        /* Everything has a caller: a cycle at the top, as when code the
         * statement runs evals other "<string>" code, which pstats merges
         * with the statement's <module>. Start from the function with the
         * most cumulative time. */
        PyObject *best = NULL;
        double best_ct = 0;
        pos = 0;
        while (PyDict_Next(stats, &pos, &label, &v)) {
            prow row;
            if (get_row(stats, label, &row) < 0)
                goto done;
            if (row.ct > best_ct) {
                best = label;
                best_ct = row.ct;
            }
        }
        if (best != NULL) {
            PyObject *pair = Py_BuildValue("(Od)", best, best_ct);
            if (pair == NULL || PyList_Append(roots, pair) < 0) {
                Py_XDECREF(pair);
                goto done;
            }
            Py_DECREF(pair);
            g.total = best_ct;
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
    /* A picture of its own: dark text on light boxes, so it reads on any
     * page; sized to the page's width by the <img>. */
    report_buf svg = REPORT_BUF_INIT;
    double h = g.max_depth * SVG_ROW;
    report_buf_printf(&svg,
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                      "viewBox=\"0 0 %.0f %.0f\"><g font-family=\"DejaVu Sans Mono,Menlo,Consolas,"
                      "monospace\" font-size=\"11\" fill=\"#111111\">\n",
                      SVG_W, h, SVG_W, h);
    report_buf_append(&svg, body.data ? body.data : "", body.len);
    report_buf_puts(&svg, "</g></svg>\n");
    report_buf_puts(b, "<details open><summary style=\"" REPORT_SUMMARY
                       "\">Call graph</summary>\n<div style=\"" REPORT_DIM
                       "\">Each box is a function; its width is its share of the cumulative "
                       "time, and the functions it calls sit below it.</div>\n");
    int bad = report_html_img_svg(b, &svg, SVG_W, h,
                                  "Call graph: an icicle of cumulative time, callers above "
                                  "callees; the table above has the figures") < 0;
    report_buf_free(&svg);
    if (bad)
        goto done;
    if (g.rects >= SVG_MAX_RECTS)
        report_buf_printf(b, "<div style=\"" REPORT_DIM "\">(the graph stops at %d boxes)</div>",
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

#define HTML_MAX_ROWS 500

int prun_render_html(report_buf *b, const prun_html_args *a)
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
    /* With no -l, the top REPORT_DEFAULT_ROWS; with -l, what it asked for,
     * up to HTML_MAX_ROWS. The text version has every listed row. */
    Py_ssize_t cap = a->limited ? HTML_MAX_ROWS : REPORT_DEFAULT_ROWS;
    Py_ssize_t n = listed < cap ? listed : cap;
    for (Py_ssize_t i = 0; i < n; i++) {
        prow r;
        if (get_row(stats, PyList_GET_ITEM(a->order, i), &r) < 0)
            goto done;
        if (r.tt > max_tt)
            max_tt = r.tt;
        if (r.ct > max_ct)
            max_ct = r.ct;
    }
    report_html_open(b);
    report_buf b2 = REPORT_BUF_INIT;
    report_buf_printf(&b2, "%.0f function calls", total_calls);
    if (total_calls != prim_calls)
        report_buf_printf(&b2, " (%.0f primitive calls)", prim_calls);
    report_buf_puts(&b2, " in ");
    fmt_time(&b2, total_tt);
    report_buf_puts(&b2, " \u00b7 ordered by ");
    report_buf_html(&b2, sort_txt, strlen(sort_txt));
    if (listed != PyDict_GET_SIZE(stats))
        report_buf_printf(&b2, " \u00b7 -l keeps %zd of %zd functions", listed,
                          PyDict_GET_SIZE(stats));
    report_html_head(b, "%s", b2.data ? b2.data : "");
    report_buf_free(&b2);
    report_buf_puts(b, "<table class=\"pyro-prun\" style=\"" REPORT_TABLE
                       "\">\n<tr><th style=\"" REPORT_TH "\">ncalls</th><th style=\"" REPORT_TH
                       "\">tottime</th><th style=\"" REPORT_TH "\"></th><th style=\"" REPORT_TH
                       "\">percall</th><th style=\"" REPORT_TH
                       "\">cumtime</th><th style=\"" REPORT_TH "\"></th><th style=\"" REPORT_TH
                       "\">percall</th><th style=\"" REPORT_TH_L "\">function</th></tr>\n");
    for (Py_ssize_t i = 0; i < n; i++) {
        prow r;
        if (get_row(stats, PyList_GET_ITEM(a->order, i), &r) < 0)
            goto done;
        report_buf_puts(b, "<tr><td style=\"" REPORT_TD "\">");
        ncalls_cell(b, r.nc, r.cc);
        report_buf_puts(b, "</td><td style=\"" REPORT_TD "\">");
        fmt_time(b, r.tt);
        report_buf_puts(b, "</td><td style=\"" REPORT_TD_L ";padding-left:0;width:64px\">");
        report_html_bar(b, REPORT_ORANGE, max_tt > 0 ? 60.0 * r.tt / max_tt : 0.0);
        report_buf_puts(b, "</td><td style=\"" REPORT_TD "\">");
        if (r.nc > 0)
            fmt_time(b, r.tt / r.nc);
        report_buf_puts(b, "</td><td style=\"" REPORT_TD "\">");
        fmt_time(b, r.ct);
        report_buf_puts(b, "</td><td style=\"" REPORT_TD_L ";padding-left:0;width:64px\">");
        report_html_bar(b, REPORT_BLUE, max_ct > 0 ? 60.0 * r.ct / max_ct : 0.0);
        report_buf_puts(b, "</td><td style=\"" REPORT_TD "\">");
        if (r.cc > 0)
            fmt_time(b, r.ct / r.cc);
        /* Names may wrap (never cut): a long file path breaks, the
         * numbers keep their columns. */
        report_buf_puts(b, "</td><td style=\"" REPORT_TD_L
                           ";white-space:normal;overflow-wrap:break-word;min-width:16em\">");
        html_name(b, r.label);
        report_buf_puts(b, "</td></tr>\n");
    }
    report_buf_puts(b, "</table>\n");
    report_html_footer(b, n, listed, "functions", listed > n ? a->more_hint : NULL);

    if (html_icicle(b, stats, callees) < 0)
        goto done;

    /* Callers and callees of the top functions. */
    Py_ssize_t ncc = n < CC_FUNCS ? n : CC_FUNCS;
    report_buf_printf(b,
                      "<details%s><summary style=\"" REPORT_SUMMARY
                      "\">Callers and callees of the top %zd function%s</summary>\n",
                      a->open_callers ? " open" : "", ncc, ncc == 1 ? "" : "s");
    for (Py_ssize_t i = 0; i < ncc; i++) {
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
    /* The notes of the text version, line by line. */
    for (const char *p = a->note; p != NULL && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0)
            report_note(NULL, b, "%.*s", (int)len, p);
        p = e ? e + 1 : p + len;
    }
    report_html_close(b);
    rc = 0;
done:
    Py_XDECREF(stats);
    Py_XDECREF(callees);
    Py_XDECREF(sort_type);
    return rc;
}

PyObject *prun_render_print_list(PyObject *st, PyObject *lims)
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
    r = PyObject_CallMethod(st, "get_print_list", "(O)", lst);
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
