/* lineprof/render.c - the results of %lprun: gathered, then laid out as text
 * (line_profiler's layout) and HTML (one table per function, with bars and
 * highlighted source).
 *
 * Owns lprun_report: a snapshot of a LineProfiler's timings with each
 * function's source block, sorted as line_profiler sorts them.
 */
#include "lineprof/render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- gathering results ----------------------------------------------------------- */

void lprun_report_clear(lprun_report *rep)
{
    for (Py_ssize_t i = 0; i < rep->n; i++) {
        Py_XDECREF(rep->fns[i].filename);
        Py_XDECREF(rep->fns[i].name);
        Py_XDECREF(rep->fns[i].qualname);
        Py_XDECREF(rep->fns[i].lines);
    }
    PyMem_Free(rep->fns);
    rep->fns = NULL;
    rep->n = 0;
}

/* The source lines of the block starting at first_line, via linecache and
 * inspect.getblock (what line_profiler shows). New list, or NULL with no
 * exception set if the source cannot be found. */
static PyObject *source_block(PyObject *filename, PyObject *globals, int first_line)
{
    PyObject *linecache = NULL, *inspect = NULL, *all = NULL, *tail = NULL, *block = NULL,
             *r = NULL;

    linecache = lineprof_import("linecache");
    if (linecache == NULL)
        goto done;
    r = PyObject_CallMethod(linecache, "checkcache", "O", filename);
    Py_XDECREF(r);
    if (r == NULL)
        PyErr_Clear();
    all = globals ? PyObject_CallMethod(linecache, "getlines", "OO", filename, globals)
                  : PyObject_CallMethod(linecache, "getlines", "O", filename);
    if (all == NULL || !PyList_Check(all) || PyList_GET_SIZE(all) < first_line)
        goto done;
    tail = PyList_GetSlice(all, first_line - 1, PyList_GET_SIZE(all));
    inspect = lineprof_import("inspect");
    if (tail == NULL || inspect == NULL)
        goto done;
    block = PyObject_CallMethod(inspect, "getblock", "O", tail);
    if (block != NULL && !PyList_Check(block)) {
        PyObject *l = PySequence_List(block);
        Py_SETREF(block, l);
    }
    if (block == NULL) {
        /* getblock fails on odd sources; fall back to the tail. */
        PyErr_Clear();
        block = Py_NewRef(tail);
    }
done:
    PyErr_Clear();
    Py_XDECREF(linecache);
    Py_XDECREF(inspect);
    Py_XDECREF(all);
    Py_XDECREF(tail);
    return block;
}

static int fn_cmp(const void *a, const void *b);

int lprun_report_gather(PyObject *prof, lprun_report *rep)
{
    Py_ssize_t n = lineprof_count(prof);
    rep->fns = PyMem_Calloc((size_t)(n ? n : 1), sizeof(lprun_fn));
    if (rep->fns == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    rep->problem = lineprof_problem(prof);
    for (Py_ssize_t i = 0; i < n; i++) {
        lprun_fn *f = &rep->fns[rep->n];
        if (lineprof_get(prof, i, &f->r) < 0)
            continue;
        rep->n++;
        PyCodeObject *co = (PyCodeObject *)f->r.code;
        f->filename = Py_NewRef(co->co_filename);
        f->name = Py_NewRef(co->co_name);
        f->qualname = Py_NewRef(co->co_qualname);
        int maxhit = -1;
        for (int k = 0; k < f->r.nlines; k++) {
            if (f->r.hits[k] > 0) {
                f->total += f->r.ns[k];
                maxhit = k;
                if (f->r.hits[k] > f->calls)
                    f->calls = f->r.hits[k];
            }
        }
        f->lines = source_block(f->filename, f->r.globals, f->r.first_line);
        f->nshow = f->lines ? (int)PyList_GET_SIZE(f->lines) : 0;
        if (f->nshow < maxhit + 1)
            f->nshow = maxhit + 1;
        if (f->nshow < 1)
            f->nshow = 1;
    }
    qsort(rep->fns, (size_t)rep->n, sizeof(lprun_fn), fn_cmp);
    return 0;
}

/* The i-th source line (0-based from first_line) without its newline. */
static const char *src_line(lprun_fn *f, int i, Py_ssize_t *len)
{
    *len = 0;
    if (f->lines == NULL || i >= PyList_GET_SIZE(f->lines))
        return "";
    PyObject *l = PyList_GET_ITEM(f->lines, i);
    if (!PyUnicode_Check(l))
        return "";
    const char *s = PyUnicode_AsUTF8AndSize(l, len);
    if (s == NULL) {
        PyErr_Clear();
        *len = 0;
        return "";
    }
    while (*len > 0 && (s[*len - 1] == '\n' || s[*len - 1] == '\r'))
        (*len)--;
    return s;
}

/* Order of functions: line_profiler's, by (filename, first line, name). */
static int fn_cmp(const void *a, const void *b)
{
    const lprun_fn *x = a, *y = b;
    int c = PyUnicode_Compare(x->filename, y->filename);
    if (c == -1 && PyErr_Occurred())
        PyErr_Clear();
    if (c != 0)
        return c;
    if (x->r.first_line != y->r.first_line)
        return x->r.first_line < y->r.first_line ? -1 : 1;
    c = PyUnicode_Compare(x->name, y->name);
    if (c == -1 && PyErr_Occurred())
        PyErr_Clear();
    return c;
}

/* ---- text ---------------------------------------------------------------------------- */

static void text_row(report_buf *b, const char *c1, const char *c2, const char *c3, const char *c4,
                     const char *c5, const char *src, Py_ssize_t srclen)
{
    report_buf_printf(b, "%6s %9s %12s %8s %8s  ", c1, c2, c3, c4, c5);
    report_buf_append(b, src, (size_t)srclen);
    report_buf_puts(b, "\n");
}

void lprun_render_text(lprun_report *rep, report_buf *b)
{
    double scalar = 1e-9 / rep->unit;
    report_buf_printf(b, "Timer unit: %g s\n\n", rep->unit);
    for (Py_ssize_t i = 0; i < rep->n; i++) {
        lprun_fn *f = &rep->fns[i];
        if (rep->strip && f->total == 0)
            continue;
        const char *fname = PyUnicode_AsUTF8(f->filename);
        const char *name = PyUnicode_AsUTF8(f->name);
        if (fname == NULL || name == NULL) {
            PyErr_Clear();
            continue;
        }
        report_buf_printf(b, "Total time: %g s\n", (double)f->total * 1e-9);
        report_buf_printf(b, "File: %s\n", fname);
        report_buf_printf(b, "Function: %s at line %d\n", name, f->r.first_line);
        if (f->lines == NULL)
            report_buf_puts(b, "(source not found through linecache; lines are shown blank)\n");
        report_buf_puts(b, "\n");
        text_row(b, "Line #", "Hits", "Time", "Per Hit", "% Time", "Line Contents", 13);
        report_buf_puts(b, "==============================================================\n");
        for (int k = 0; k < f->nshow; k++) {
            char c1[24], c2[24] = "", c3[40] = "", c4[40] = "", c5[24] = "";
            snprintf(c1, sizeof c1, "%d", f->r.first_line + k);
            if (k < f->r.nlines && f->r.hits[k] > 0) {
                double t = (double)f->r.ns[k];
                snprintf(c2, sizeof c2, "%llu", (unsigned long long)f->r.hits[k]);
                snprintf(c3, sizeof c3, "%5.1f", t * scalar);
                snprintf(c4, sizeof c4, "%5.1f", t * scalar / (double)f->r.hits[k]);
                if (f->total > 0)
                    snprintf(c5, sizeof c5, "%5.1f", 100.0 * t / (double)f->total);
            }
            Py_ssize_t sl;
            const char *src = src_line(f, k, &sl);
            text_row(b, c1, c2, c3, c4, c5, src, sl);
        }
        report_buf_puts(b, "\n");
    }
    if (rep->problem)
        report_buf_printf(b, "Warning: %s\n", rep->problem);
}

/* ---- HTML ------------------------------------------------------------------------------ */

static const char lp_css[] =
    "<style>\n"
    ".pyro-lp td.heat{text-align:left;min-width:104px}\n"
    ".pyro-lp tr.zero td{color:var(--jp-content-font-color3,#999)}\n"
    ".pyro-lp tr.hot td.src{background:rgba(232,116,59,0.16)}\n"
    ".pyro-lp .k,.pyro-lp .kn,.pyro-lp .kd,.pyro-lp .kr,.pyro-lp .kc,.pyro-lp .ow"
    "{color:var(--jp-mirror-editor-keyword-color,#008000);font-weight:bold}\n"
    ".pyro-lp .s,.pyro-lp .s1,.pyro-lp .s2,.pyro-lp .sa,.pyro-lp .sd,.pyro-lp .si,.pyro-lp .se"
    "{color:var(--jp-mirror-editor-string-color,#ba2121)}\n"
    ".pyro-lp .c,.pyro-lp .c1,.pyro-lp .cm{color:var(--jp-mirror-editor-comment-color,#408080);"
    "font-style:italic}\n"
    ".pyro-lp .mi,.pyro-lp .mf,.pyro-lp .mh{color:var(--jp-mirror-editor-number-color,#080)}\n"
    ".pyro-lp .o{color:var(--jp-mirror-editor-operator-color,#aa22ff)}\n"
    ".pyro-lp .nf,.pyro-lp .nc{color:var(--jp-mirror-editor-def-color,#00f)}\n"
    ".pyro-lp .nb,.pyro-lp .bp{color:var(--jp-mirror-editor-builtin-color,#008000)}\n"
    ".pyro-lp .nd{color:var(--jp-mirror-editor-meta-color,#aa22ff)}\n"
    "</style>\n";

/* Human time: 3 significant digits in s/ms/us/ns. */
static void fmt_time(char *buf, size_t size, double ns)
{
    if (ns >= 1e9)
        snprintf(buf, size, "%.3g s", ns / 1e9);
    else if (ns >= 1e6)
        snprintf(buf, size, "%.3g ms", ns / 1e6);
    else if (ns >= 1e3)
        snprintf(buf, size, "%.3g \xc2\xb5s", ns / 1e3);
    else
        snprintf(buf, size, "%.0f ns", ns);
}

/* Highlighted HTML lines of f's source (pygments, CSS classes), or NULL with
 * no exception set when pygments is missing or the lines do not match up. */
static PyObject *highlight(lprun_fn *f)
{
    PyObject *pyg = NULL, *lexers = NULL, *formatters = NULL, *lexer = NULL, *fmt = NULL;
    PyObject *src = NULL, *out = NULL, *lines = NULL, *empty = NULL, *kw = NULL;

    if (f->lines == NULL)
        return NULL;
    pyg = lineprof_import("pygments");
    if (pyg == NULL)
        goto done;
    lexers = lineprof_import("pygments.lexers");
    formatters = lineprof_import("pygments.formatters");
    if (lexers == NULL || formatters == NULL)
        goto done;
    lexer = PyObject_CallMethod(lexers, "PythonLexer", NULL);
    kw = Py_BuildValue("{s:O}", "nowrap", Py_True);
    if (lexer == NULL || kw == NULL)
        goto done;
    PyObject *fcls = PyObject_GetAttrString(formatters, "HtmlFormatter");
    if (fcls == NULL)
        goto done;
    PyObject *noargs = PyTuple_New(0);
    fmt = noargs ? PyObject_Call(fcls, noargs, kw) : NULL;
    Py_XDECREF(noargs);
    Py_DECREF(fcls);
    empty = PyUnicode_FromString("");
    if (fmt == NULL || empty == NULL)
        goto done;
    src = PyUnicode_Join(empty, f->lines);
    if (src == NULL)
        goto done;
    out = PyObject_CallMethod(pyg, "highlight", "OOO", src, lexer, fmt);
    if (out == NULL || !PyUnicode_Check(out))
        goto done;
    lines = PyObject_CallMethod(out, "split", "s", "\n");
    if (lines != NULL &&
        (!PyList_Check(lines) || PyList_GET_SIZE(lines) < PyList_GET_SIZE(f->lines)))
        Py_CLEAR(lines);
done:
    PyErr_Clear();
    Py_XDECREF(pyg);
    Py_XDECREF(lexers);
    Py_XDECREF(formatters);
    Py_XDECREF(lexer);
    Py_XDECREF(fmt);
    Py_XDECREF(src);
    Py_XDECREF(out);
    Py_XDECREF(empty);
    Py_XDECREF(kw);
    return lines;
}

void lprun_render_html(lprun_report *rep, report_buf *b)
{
    char t1[48], t2[48], t3[48], where[160];

    report_buf_puts(b, report_css);
    report_buf_puts(b, lp_css);
    report_buf_puts(b, "<div class=\"pyro pyro-lp\">\n");
    if (rep->wall >= 0) {
        fmt_time(t1, sizeof t1, (double)rep->wall);
        report_buf_printf(b,
                          "<div class=\"hdr\">Line profile: the statement ran for %s under the "
                          "profiler.</div>\n",
                          t1);
    }
    int shown = 0;
    for (Py_ssize_t i = 0; i < rep->n; i++) {
        lprun_fn *f = &rep->fns[i];
        if (rep->strip && f->total == 0)
            continue;
        shown++;
        const char *fname = PyUnicode_AsUTF8(f->filename);
        const char *qual = PyUnicode_AsUTF8(f->qualname);
        if (fname == NULL || qual == NULL) {
            PyErr_Clear();
            continue;
        }
        long cell = report_cell_number(fname);
        if (cell >= 0)
            snprintf(where, sizeof where, "In [%ld]", cell);
        else
            snprintf(where, sizeof where, "%s", fname);
        fmt_time(t1, sizeof t1, (double)f->total);
        report_buf_puts(b, "<div class=\"hdr\"><b>");
        report_buf_html(b, qual, strlen(qual));
        report_buf_puts(b, "</b> in <span title=\"");
        report_buf_html(b, fname, strlen(fname));
        report_buf_puts(b, "\">");
        report_buf_html(b, where, strlen(where));
        report_buf_printf(b, "</span>, line %d &mdash; total %s", f->r.first_line, t1);
        if (rep->wall > 0)
            report_buf_printf(b, " (%.1f%% of the statement)",
                              100.0 * (double)f->total / (double)rep->wall);
        if (f->total == 0)
            report_buf_puts(b, " &mdash; never ran");
        report_buf_puts(b, "</div>\n");
        if (f->lines == NULL)
            report_buf_puts(b, "<div class=\"hdr\">Source not found through linecache.</div>\n");

        /* The hottest lines: the top three by time that take at least 5%. */
        int hot[3] = {-1, -1, -1};
        for (int k = 0; k < f->r.nlines && k < f->nshow; k++) {
            if (f->r.hits[k] == 0 || f->total == 0 || (double)f->r.ns[k] < 0.05 * (double)f->total)
                continue;
            for (int h = 0; h < 3; h++) {
                if (hot[h] < 0 || f->r.ns[k] > f->r.ns[hot[h]]) {
                    for (int m = 2; m > h; m--)
                        hot[m] = hot[m - 1];
                    hot[h] = k;
                    break;
                }
            }
        }
        PyObject *hl = highlight(f);
        report_buf_puts(b, "<table>\n<thead><tr><th>Line</th><th>Hits</th><th>Time</th>"
                           "<th>Per hit</th><th>% Time</th><th class=\"src\"></th>"
                           "<th class=\"src\">Line contents</th></tr></thead>\n<tbody>\n");
        for (int k = 0; k < f->nshow; k++) {
            int ran = k < f->r.nlines && f->r.hits[k] > 0;
            int is_hot = k == hot[0] || k == hot[1] || k == hot[2];
            report_buf_printf(b, "<tr%s><td>%d</td>",
                              is_hot ? " class=\"hot\""
                              : ran  ? ""
                                     : " class=\"zero\"",
                              f->r.first_line + k);
            if (ran) {
                double t = (double)f->r.ns[k];
                double pct = f->total > 0 ? 100.0 * t / (double)f->total : 0.0;
                fmt_time(t2, sizeof t2, t);
                fmt_time(t3, sizeof t3, t / (double)f->r.hits[k]);
                report_buf_printf(b, "<td>%llu</td><td>%s</td><td>%s</td><td>%.1f</td>",
                                  (unsigned long long)f->r.hits[k], t2, t3, pct);
                report_buf_puts(b, "<td class=\"heat\">");
                report_buf_bar(b, "bar", (int)(pct + 0.5), 0);
                report_buf_puts(b, "</td>");
            } else {
                report_buf_puts(b, "<td></td><td></td><td></td><td></td><td class=\"heat\"></td>");
            }
            report_buf_puts(b, "<td class=\"src\">");
            if (hl != NULL && k < PyList_GET_SIZE(hl) && k < PyList_GET_SIZE(f->lines)) {
                Py_ssize_t hlen;
                const char *h = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(hl, k), &hlen);
                if (h != NULL)
                    report_buf_append(b, h, (size_t)hlen);
                else
                    PyErr_Clear();
            } else {
                Py_ssize_t sl;
                const char *src = src_line(f, k, &sl);
                report_buf_html(b, src, (size_t)sl);
            }
            report_buf_puts(b, "</td></tr>\n");
        }
        report_buf_puts(b, "</tbody></table>\n");
        Py_XDECREF(hl);
    }
    if (shown == 0)
        report_buf_puts(b, "<div class=\"hdr\">No profiled function ran.</div>\n");
    if (rep->problem) {
        report_buf_puts(b, "<div class=\"hdr\">Warning: ");
        report_buf_html(b, rep->problem, strlen(rep->problem));
        report_buf_puts(b, "</div>\n");
    }
    report_buf_puts(b, "</div>\n");
}
