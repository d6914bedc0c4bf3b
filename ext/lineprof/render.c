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
    r = PyObject_CallMethod(linecache, "checkcache", "(O)", filename);
    Py_XDECREF(r);
    if (r == NULL)
        PyErr_Clear();
    all = globals ? PyObject_CallMethod(linecache, "getlines", "OO", filename, globals)
                  : PyObject_CallMethod(linecache, "getlines", "(O)", filename);
    if (all == NULL || !PyList_Check(all) || PyList_GET_SIZE(all) < first_line)
        goto done;
    tail = PyList_GetSlice(all, first_line - 1, PyList_GET_SIZE(all));
    inspect = lineprof_import("inspect");
    if (tail == NULL || inspect == NULL)
        goto done;
    block = PyObject_CallMethod(inspect, "getblock", "(O)", tail);
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

/* One row: the five number columns, then the source (wrapped at
 * REPORT_TEXT_COLS when wrap is set, as line_profiler's layout otherwise). */
static void text_row(report_buf *b, int wrap, const char *c1, const char *c2, const char *c3,
                     const char *c4, const char *c5, const char *src, Py_ssize_t srclen)
{
    char prefix[160];
    int n = snprintf(prefix, sizeof prefix, "%6s %9s %12s %8s %8s  ", c1, c2, c3, c4, c5);
    if (wrap && n > 0 && (size_t)n < sizeof prefix) {
        report_text_source(b, prefix, (size_t)n, src, (size_t)srclen);
        return;
    }
    report_buf_puts(b, prefix);
    report_buf_append(b, src, (size_t)srclen);
    report_buf_puts(b, "\n");
}

void lprun_render_text(lprun_report *rep, report_buf *b, int wrap)
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
        text_row(b, wrap, "Line #", "Hits", "Time", "Per Hit", "% Time", "Line Contents", 13);
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
            text_row(b, wrap, c1, c2, c3, c4, c5, src, sl);
        }
        report_buf_puts(b, "\n");
    }
    if (rep->problem)
        report_buf_printf(b, "Warning: %s\n", rep->problem);
}

/* ---- HTML ------------------------------------------------------------------------------ */

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

/* Syntax colours as inline styles, each at least 3:1 against white and
 * against #111, so highlighting survives sanitizers and reads on light and
 * dark pages. Matched against str(pygments token type) by prefix, in order. */
static const struct {
    const char *prefix;
    const char *style;
} token_styles[] = {
    {"Token.Comment", "color:#808080;font-style:italic"},
    {"Token.Keyword", "color:#9467bd;font-weight:600"},
    {"Token.Operator.Word", "color:#9467bd;font-weight:600"},
    {"Token.Literal.String", "color:#2ca02c"},
    {"Token.Literal.Number", "color:#1f9e89"},
    {"Token.Name.Function", "color:#3d8bfd"},
    {"Token.Name.Class", "color:#3d8bfd"},
    {"Token.Name.Builtin", "color:#d9480f"},
    {"Token.Name.Decorator", "color:#d9480f"},
};

/* Appends one token's text, escaped, in its colour; a newline in it starts
 * the next line of out (a list of str being built in cur). */
static int emit_token(PyObject *out, report_buf *cur, const char *style, const char *v, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(v, '\n', n);
        size_t len = nl ? (size_t)(nl - v) : n;
        if (len > 0 && style != NULL) {
            report_buf_printf(cur, "<span style=\"%s\">", style);
            report_buf_html(cur, v, len);
            report_buf_puts(cur, "</span>");
        } else {
            report_buf_html(cur, v, len);
        }
        if (nl == NULL)
            break;
        PyObject *line = report_buf_to_str(cur);
        if (line == NULL || PyList_Append(out, line) < 0) {
            Py_XDECREF(line);
            return -1;
        }
        Py_DECREF(line);
        cur->len = 0;
        if (cur->data)
            cur->data[0] = '\0';
        v = nl + 1;
        n -= len + 1;
    }
    return 0;
}

/* Highlighted HTML lines of f's source (pygments tokens, inline styles), or
 * NULL with no exception set when pygments is missing or the lines do not
 * match up. */
static PyObject *highlight(lprun_fn *f)
{
    PyObject *pyg = NULL, *lexers = NULL, *lexer = NULL, *src = NULL, *toks = NULL, *it = NULL;
    PyObject *empty = NULL, *lines = NULL, *tok;
    report_buf cur = REPORT_BUF_INIT;

    if (f->lines == NULL)
        return NULL;
    pyg = lineprof_import("pygments");
    if (pyg == NULL)
        goto done;
    lexers = lineprof_import("pygments.lexers");
    if (lexers == NULL)
        goto done;
    lexer = PyObject_CallMethod(lexers, "PythonLexer", NULL);
    empty = PyUnicode_FromString("");
    if (lexer == NULL || empty == NULL)
        goto done;
    src = PyUnicode_Join(empty, f->lines);
    if (src == NULL)
        goto done;
    toks = PyObject_CallMethod(pyg, "lex", "OO", src, lexer);
    it = toks ? PyObject_GetIter(toks) : NULL;
    lines = PyList_New(0);
    if (it == NULL || lines == NULL)
        goto fail;
    while ((tok = PyIter_Next(it)) != NULL) {
        if (!PyTuple_Check(tok) || PyTuple_GET_SIZE(tok) != 2) {
            Py_DECREF(tok);
            goto fail;
        }
        PyObject *kind = PyObject_Str(PyTuple_GET_ITEM(tok, 0));
        Py_ssize_t vn;
        const char *k = kind ? PyUnicode_AsUTF8(kind) : NULL;
        const char *v = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(tok, 1), &vn);
        const char *style = NULL;
        for (size_t i = 0; k != NULL && i < sizeof token_styles / sizeof token_styles[0]; i++) {
            size_t pl = strlen(token_styles[i].prefix);
            if (strncmp(k, token_styles[i].prefix, pl) == 0 && (k[pl] == '\0' || k[pl] == '.')) {
                style = token_styles[i].style;
                break;
            }
        }
        int bad = k == NULL || v == NULL || emit_token(lines, &cur, style, v, (size_t)vn) < 0;
        Py_XDECREF(kind);
        Py_DECREF(tok);
        if (bad)
            goto fail;
    }
    if (PyErr_Occurred() || cur.failed)
        goto fail;
    if (cur.len > 0) {
        PyObject *line = report_buf_to_str(&cur);
        if (line == NULL || PyList_Append(lines, line) < 0) {
            Py_XDECREF(line);
            goto fail;
        }
        Py_DECREF(line);
    }
    if (PyList_GET_SIZE(lines) < PyList_GET_SIZE(f->lines))
        goto fail;
    goto done;
fail:
    Py_CLEAR(lines);
done:
    PyErr_Clear();
    report_buf_free(&cur);
    Py_XDECREF(pyg);
    Py_XDECREF(lexers);
    Py_XDECREF(lexer);
    Py_XDECREF(src);
    Py_XDECREF(toks);
    Py_XDECREF(it);
    Py_XDECREF(empty);
    return lines;
}

void lprun_render_html(lprun_report *rep, report_buf *b)
{
    char t1[48], t2[48], t3[48], where[160];

    report_html_open(b);
    if (rep->wall >= 0) {
        fmt_time(t1, sizeof t1, (double)rep->wall);
        report_html_head(b, "Line profile: the statement ran for %s under the profiler.", t1);
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
        report_buf_puts(b, "<div class=\"pyro-head\" style=\"margin:8px 0 2px 0\"><b>");
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
            report_note(NULL, b, "Source not found through linecache; lines are shown blank.");

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
        report_buf_puts(
            b, "<table class=\"pyro-lprun\" style=\"" REPORT_TABLE
               "\">\n<thead><tr><th style=\"" REPORT_TH "\">Line</th><th style=\"" REPORT_TH
               "\">Hits</th><th style=\"" REPORT_TH "\">Time</th><th style=\"" REPORT_TH
               "\">Per hit</th><th style=\"" REPORT_TH "\">% Time</th><th style=\"" REPORT_TH
               "\"></th><th style=\"" REPORT_TH_L "\">Line contents</th></tr></thead>\n<tbody>\n");
        for (int k = 0; k < f->nshow; k++) {
            int ran = k < f->r.nlines && f->r.hits[k] > 0;
            int is_hot = k == hot[0] || k == hot[1] || k == hot[2];
            report_buf_printf(b, "<tr%s><td style=\"" REPORT_TD "%s\">%d</td>",
                              is_hot ? " class=\"hot\" style=\"font-weight:600\""
                              : ran  ? ""
                                     : " class=\"zero\"",
                              ran ? "" : ";" REPORT_DIM, f->r.first_line + k);
            if (ran) {
                double t = (double)f->r.ns[k];
                double pct = f->total > 0 ? 100.0 * t / (double)f->total : 0.0;
                fmt_time(t2, sizeof t2, t);
                fmt_time(t3, sizeof t3, t / (double)f->r.hits[k]);
                report_buf_printf(b,
                                  "<td style=\"" REPORT_TD "\">%llu</td><td style=\"" REPORT_TD
                                  "\">%s</td><td style=\"" REPORT_TD
                                  "\">%s</td><td style=\"" REPORT_TD "\">%.1f</td>",
                                  (unsigned long long)f->r.hits[k], t2, t3, pct);
                report_buf_puts(b, "<td style=\"" REPORT_TD_L ";width:64px\">");
                report_html_bar(b, REPORT_ORANGE, 0.6 * pct);
                report_buf_puts(b, "</td>");
            } else {
                report_buf_puts(b, "<td></td><td></td><td></td><td></td><td></td>");
            }
            report_buf_printf(b, "<td style=\"" REPORT_TD_SRC "%s\">",
                              is_hot ? ";" REPORT_SHADE_ORANGE : "");
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
        report_note(NULL, b, "No profiled function ran.");
    if (rep->problem)
        report_note(NULL, b, "Warning: %s", rep->problem);
}
