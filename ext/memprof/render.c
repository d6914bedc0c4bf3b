/* memprof/render.c - the text and HTML of %mprun and %%mprof.
 *
 * Owns the %mprun line tables (memory_profiler's text layout; HTML with
 * net-allocation bars and hold/release shading) and the %%mprof chart (an
 * inline SVG of RSS and heap over time, target calls bracketed). Reads
 * memprof/engine.c's results, never changes them.
 */
#include "memprof/render.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)

/* ---- formatting ---------------------------------------------------------------- */

/* Line `lineno` of t's file without its newline ("" if absent), as UTF-8
 * borrowed from the list item. */
static const char *source_line(const mprun_target *t, int lineno, Py_ssize_t *len)
{
    *len = 0;
    if (lineno < 1 || lineno > PyList_GET_SIZE(t->lines))
        return "";
    PyObject *s = PyList_GET_ITEM(t->lines, lineno - 1);
    const char *u = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, len) : NULL;
    if (u == NULL) {
        PyErr_Clear();
        *len = 0;
        return "";
    }
    while (*len > 0 && (u[*len - 1] == '\n' || u[*len - 1] == '\r'))
        (*len)--;
    return u;
}

/* Lines whose net allocation passes +-NET_SHADE are shaded. */
#define NET_SHADE ((int64_t)64 * 1024)

void mprun_render_lines_text(report_buf *b, mprun_target *infos, memprof_targets *ts, size_t n)
{
    char c[6][48], prefix[160];
    for (size_t i = 0; i < n; i++) {
        memprof_target *t = memprof_targets_get(ts, i);
        const char *fn = PyUnicode_AsUTF8(infos[i].filename);
        report_buf_printf(b, "Filename: %s\n\n", fn ? fn : "?");
        /* memory_profiler's columns, then the allocator's Net (Allocated,
         * Freed and Peak are in the HTML and in -r), so that 40 columns
         * are left for the source before REPORT_TEXT_COLS; longer lines wrap. */
        int w = snprintf(prefix, sizeof prefix, "%6s %12s %12s  %10s  %10s   ", "Line #",
                         "Mem usage", "Increment", "Occurrences", "Net");
        report_text_source(b, prefix, (size_t)w, "Line Contents", 13);
        for (int k = 0; k < w + 13; k++)
            report_buf_puts(b, "=");
        report_buf_puts(b, "\n");
        for (int ln = infos[i].first; ln <= infos[i].last; ln++) {
            memprof_line *l =
                ln >= t->first && ln - t->first < t->nlines ? &t->lines[ln - t->first] : NULL;
            Py_ssize_t len;
            const char *srcl = source_line(&infos[i], ln, &len);
            for (int k = 0; k < 6; k++)
                c[k][0] = '\0';
            if (l != NULL && l->occurrences > 0) {
                report_fmt_mib(c[0], sizeof c[0], l->mem / MIB, 1, 0);
                report_fmt_mib(c[1], sizeof c[1], l->inc / MIB, 1, 0);
                snprintf(c[2], sizeof c[2], "%llu", (unsigned long long)l->occurrences);
                report_fmt_bytes(c[3], sizeof c[3], (int64_t)(l->allocated - l->freed), 1);
            }
            w = snprintf(prefix, sizeof prefix, "%6d %12s %12s  %10s  %10s   ", ln, c[0], c[1],
                         c[2], c[3]);
            report_text_source(b, prefix, (size_t)w, srcl, (size_t)len);
        }
        report_buf_puts(b, "\n\n");
    }
    while (b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == ' '))
        b->data[--b->len] = '\0';
}

void mprun_render_lines_html(report_buf *b, mprun_target *infos, memprof_targets *ts, size_t n,
                             int np_tracked)
{
    static const char *const heads[] = {"Line&nbsp;#", "Mem usage", "Increment", "Occurrences",
                                        "Allocated",   "Freed",     "Net",       "Peak"};
    char c[8][48], label[256];
    report_html_open(b);
    for (size_t i = 0; i < n; i++) {
        memprof_target *t = memprof_targets_get(ts, i);
        const char *fn = PyUnicode_AsUTF8(infos[i].filename);
        const char *qn = PyUnicode_AsUTF8(infos[i].qualname);
        int64_t maxnet = 1;
        for (int k = 0; k < t->nlines; k++) {
            int64_t net = (int64_t)(t->lines[k].allocated - t->lines[k].freed);
            if (net < 0)
                net = -net;
            if (net > maxnet)
                maxnet = net;
        }
        long cell = fn ? report_cell_number(fn) : -1;
        if (cell >= 0)
            snprintf(label, sizeof label, "In [%ld]", cell);
        else
            snprintf(label, sizeof label, "%s", fn ? fn : "?");
        report_buf_puts(b, "<div class=\"pyro-head\" style=\"margin:8px 0 2px 0\">Filename: <b>");
        report_buf_html(b, label, strlen(label));
        report_buf_puts(b, "</b> &mdash; function <b>");
        report_buf_html(b, qn ? qn : "?", qn ? strlen(qn) : 1);
        report_buf_printf(b, "</b> at line %d</div>\n", infos[i].first);
        report_buf_puts(b, "<table class=\"pyro-mprun\" style=\"" REPORT_TABLE "\"><tr>");
        for (int k = 0; k < 8; k++)
            report_buf_printf(b, "<th style=\"" REPORT_TH "\">%s</th>", heads[k]);
        report_buf_puts(b, "<th style=\"" REPORT_TH_L "\">Line Contents</th></tr>\n");
        for (int ln = infos[i].first; ln <= infos[i].last; ln++) {
            memprof_line *l =
                ln >= t->first && ln - t->first < t->nlines ? &t->lines[ln - t->first] : NULL;
            Py_ssize_t len;
            const char *srcl = source_line(&infos[i], ln, &len);
            int64_t net = 0;
            for (int k = 0; k < 8; k++)
                c[k][0] = '\0';
            int ran = l != NULL && l->occurrences > 0;
            if (ran) {
                net = (int64_t)(l->allocated - l->freed);
                report_fmt_mib(c[0], sizeof c[0], l->mem / MIB, 1, 0);
                report_fmt_mib(c[1], sizeof c[1], l->inc / MIB, 1, 0);
                snprintf(c[2], sizeof c[2], "%llu", (unsigned long long)l->occurrences);
                report_fmt_bytes(c[3], sizeof c[3], (int64_t)l->allocated, 0);
                report_fmt_bytes(c[4], sizeof c[4], (int64_t)l->freed, 0);
                report_fmt_bytes(c[5], sizeof c[5], net, 1);
                report_fmt_bytes(c[6], sizeof c[6], l->peak, 0);
            }
            const char *cls = net >= NET_SHADE    ? " class=\"mp-up\""
                              : net <= -NET_SHADE ? " class=\"mp-down\""
                                                  : "";
            const char *shade = net >= NET_SHADE    ? ";" REPORT_SHADE_ORANGE
                                : net <= -NET_SHADE ? ";" REPORT_SHADE_BLUE
                                                    : "";
            report_buf_printf(b, "<tr%s><td style=\"" REPORT_TD "%s%s\">%d</td>", cls, shade,
                              ran ? "" : ";" REPORT_DIM, ln);
            for (int k = 0; k < 5; k++)
                report_buf_printf(b, "<td style=\"" REPORT_TD "%s\">%s</td>", shade, c[k]);
            report_buf_printf(b, "<td style=\"" REPORT_TD "%s\">", shade);
            if (ran && net != 0) {
                double w = 40.0 * (double)(net < 0 ? -net : net) / (double)maxnet;
                report_html_bar(b, net > 0 ? REPORT_ORANGE : REPORT_BLUE, w < 1 ? 1 : w);
                report_buf_puts(b, " ");
            }
            report_buf_printf(
                b, "%s</td><td style=\"" REPORT_TD "%s\">%s</td><td style=\"" REPORT_TD_SRC "%s\">",
                c[5], shade, c[6], shade);
            report_buf_html(b, srcl, (size_t)len);
            report_buf_puts(b, "</td></tr>\n");
        }
        report_buf_puts(b, "</table>\n");
    }
    report_note(NULL, b,
                "Mem usage and Increment: RSS, as memory_profiler reports it. Allocated, Freed, "
                "Net and Peak: Python's allocators%s, charged to the running line, callees "
                "included. Net is what the line allocated minus what it freed (a later line may "
                "free the rest); Peak is the highest heap rise within one run of the line.",
                np_tracked ? " and NumPy's data buffers" : "");
    report_buf_puts(b,
                    "<div class=\"pyro-note\" style=\"margin:4px 0\">Shaded: a Net of at least "
                    "<span style=\"" REPORT_SHADE_ORANGE ";padding:0 4px\">+64 KiB</span> "
                    "(the line allocated more than it freed) or <span style=\"" REPORT_SHADE_BLUE
                    ";padding:0 4px\">-64 KiB</span> (it freed more than it allocated).</div>\n");
}

/* A "nice" axis step for a range: 1, 2 or 5 times a power of ten. */
static double nice_step(double range, int ticks)
{
    double raw = range / ticks, p = pow(10, floor(log10(raw > 0 ? raw : 1)));
    double m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/* The inline chart: RSS and heap over time, target spans bracketed. */
static void mprof_svg(report_buf *b, const memprof_sample *smp, size_t n, double t0,
                      mprun_target *infos, memprof_targets *ts, size_t ninfos)
{
    const double W = 720, H = 280, L = 60, R = 16, T = 22, B = 34;
    double tmax = 1e-3, ymax = 1;
    for (size_t i = 0; i < n; i++) {
        if (smp[i].t - t0 > tmax)
            tmax = smp[i].t - t0;
        if (smp[i].rss / MIB > ymax)
            ymax = smp[i].rss / MIB;
        if (smp[i].heap / MIB > ymax)
            ymax = smp[i].heap / MIB;
    }
    double ystep = nice_step(ymax, 5), xstep = nice_step(tmax, 6);
    ymax = ceil(ymax * 1.05 / ystep) * ystep;
#define X(t) (L + ((t)-t0) / tmax * (W - L - R))
#define Y(m) (H - B - (m) / ymax * (H - T - B))
    /* A document of its own with a transparent background: text in
     * REPORT_CHART_TEXT and lines in colours that hold on light and dark. */
    report_buf_printf(b,
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                      "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans,Helvetica,Arial,"
                      "sans-serif\" font-size=\"11\" fill=\"" REPORT_CHART_TEXT "\">",
                      W, H, W, H);
    /* Spans first, behind the lines. */
    for (size_t i = 0; i < ninfos; i++) {
        memprof_target *t = memprof_targets_get(ts, i);
        const char *col = report_palette[i % REPORT_PALETTE_N];
        const char *name = PyUnicode_AsUTF8(infos[i].fullname);
        size_t shown = t->nspans < 200 ? t->nspans : 200;
        for (size_t k = 0; k < shown; k++) {
            memprof_span *s = &t->spans[k];
            double x0 = X(s->start_t), x1 = X(s->end_t);
            double y0 = Y(s->start_mem / MIB), y1 = Y(s->end_mem / MIB);
            report_buf_printf(b,
                              "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" "
                              "fill=\"%s\" fill-opacity=\"0.08\"/>",
                              x0, T, x1 - x0 > 0.5 ? x1 - x0 : 0.5, H - T - B, col);
            report_buf_printf(b,
                              "<path d=\"M%.1f %.1f h4 M%.1f %.1f v-8 v16 M%.1f %.1f h-4 "
                              "M%.1f %.1f v-8 v16\" stroke=\"%s\" fill=\"none\"/>",
                              x0, y0, x0, y0 - 0.0, x1, y1, x1, y1 - 0.0, col);
            if (k == 0 && name != NULL) {
                report_buf_printf(b, "<text x=\"%.1f\" y=\"%.0f\" fill=\"%s\">", x0 + 2,
                                  T + 10 + 11 * (double)(i % 4), col);
                report_buf_html(b, name, strlen(name));
                report_buf_puts(b, "</text>");
            }
        }
    }
    /* Axes and grid. */
    report_buf_printf(b, "<g stroke=\"#808080\" stroke-opacity=\"0.5\" stroke-width=\"0.5\">");
    for (double y = 0; y <= ymax + 1e-9; y += ystep)
        report_buf_printf(b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\"/>", L, W - R,
                          Y(y), Y(y));
    report_buf_puts(b, "</g>");
    for (double y = 0; y <= ymax + 1e-9; y += ystep)
        report_buf_printf(b, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%g</text>", L - 4,
                          Y(y) + 3, y);
    for (double x = 0; x <= tmax + 1e-9; x += xstep)
        report_buf_printf(b, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>",
                          X(t0 + x), H - B + 13, x);
    report_buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">time (s)</text>",
                      (L + W - R) / 2, H - 4);
    report_buf_printf(b,
                      "<text x=\"12\" y=\"%.0f\" transform=\"rotate(-90 12 %.0f)\" "
                      "text-anchor=\"middle\">memory (MiB)</text>",
                      (T + H - B) / 2, (T + H - B) / 2);
    /* The two series, thinned to at most ~1500 points each. */
    size_t stride = n > 1500 ? n / 1500 + 1 : 1;
    for (int series = 0; series < 2; series++) {
        report_buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                          series == 0 ? REPORT_ORANGE : REPORT_BLUE);
        for (size_t i = 0; i < n; i += stride) {
            int64_t v = series == 0 ? smp[i].rss : smp[i].heap;
            for (size_t j = i; j < i + stride && j < n; j++) {
                int64_t w = series == 0 ? smp[j].rss : smp[j].heap;
                if (w > v)
                    v = w;
            }
            report_buf_printf(b, "%.1f,%.1f ", X(smp[i].t), Y(v / MIB));
        }
        report_buf_puts(b, "\"/>");
    }
    report_buf_printf(
        b,
        "<rect x=\"%.0f\" y=\"4\" width=\"10\" height=\"3\" fill=\"" REPORT_ORANGE "\"/>"
        "<text x=\"%.0f\" y=\"10\">RSS</text>"
        "<rect x=\"%.0f\" y=\"4\" width=\"10\" height=\"3\" fill=\"" REPORT_BLUE "\"/>"
        "<text x=\"%.0f\" y=\"10\">Python heap (allocated since start)</text>",
        L, L + 14, L + 50, L + 64);
    report_buf_puts(b, "</svg>");
#undef X
#undef Y
}

int mprun_render_mprof_html(report_buf *b, const memprof_sample *smp, size_t n, double t0,
                            mprun_target *infos, memprof_targets *ts, size_t ninfos,
                            const report_buf *summary)
{
    report_buf svg = REPORT_BUF_INIT;
    report_html_open(b);
    mprof_svg(&svg, smp, n, t0, infos, ts, ninfos);
    int rc = report_html_img_svg(b, &svg, 720, 280,
                                 "Memory over time: RSS and the Python heap, with the profiled "
                                 "functions' calls bracketed; the summary below has the figures");
    report_buf_free(&svg);
    report_buf_puts(b, "<pre class=\"pyro-note\" style=\"margin:4px 0;white-space:pre-wrap\">");
    report_buf_html(b, summary->data ? summary->data : "", summary->len);
    report_buf_puts(b, "</pre>");
    report_html_close(b);
    return rc;
}
