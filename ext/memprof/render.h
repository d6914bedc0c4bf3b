/* memprof/render.h - rendering of the memory magics' results: the %mprun
 * line tables and the %%mprof chart.
 */
#ifndef PYROMETER_MPRUN_RENDER_H
#define PYROMETER_MPRUN_RENDER_H

#include "memprof/memprof.h"
#include "report.h"

/* One -f function of %mprun / %%mprof, as resolved by memprof/magic.c. */
typedef struct {
    PyObject *code;     /* owned */
    PyObject *filename; /* owned str */
    PyObject *qualname; /* owned str */
    PyObject *fullname; /* owned str: "module.name", as mprof writes it */
    PyObject *lines;    /* owned list of str: the file's lines (linecache) */
    int first, last;    /* the function's source lines */
} mprun_target;

/* Append the line tables of the n targets (infos[i] describes
 * memprof_targets_get(ts, i)): memory_profiler's text layout, or the HTML
 * (np_tracked: NumPy's buffers were counted too), left open for the caller's
 * notes: close it with report_html_close(). */
void mprun_render_lines_text(report_buf *b, mprun_target *infos, memprof_targets *ts, size_t n);
void mprun_render_lines_html(report_buf *b, mprun_target *infos, memprof_targets *ts, size_t n,
                             int np_tracked);

/* Appends the %%mprof HTML: the chart of the n samples (times from t0) as an
 * SVG image, the target calls bracketed, then the text summary. Returns 0,
 * or -1 with an exception set. */
int mprun_render_mprof_html(report_buf *b, const memprof_sample *smp, size_t n, double t0,
                            mprun_target *infos, memprof_targets *ts, size_t ninfos,
                            const report_buf *summary);

#endif
