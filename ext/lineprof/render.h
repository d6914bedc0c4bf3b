/* lineprof/render.h - what %lprun shows: a snapshot of a LineProfiler's
 * results (lprun_report) and its text and HTML renderings.
 */
#ifndef PYROMETER_LPRUN_RENDER_H
#define PYROMETER_LPRUN_RENDER_H

#include "lineprof/lineprof.h"
#include "report.h"

typedef struct {
    lineprof_result r;
    PyObject *filename; /* owned */
    PyObject *name;     /* owned: co_name */
    PyObject *qualname; /* owned: co_qualname */
    PyObject *lines;    /* owned list of str: source lines from first_line on, or NULL */
    int nshow;          /* lines to show: first_line .. first_line + nshow - 1 */
    int64_t total;      /* sum of the line times, ns */
    uint64_t calls;     /* hits on the busiest line, for the header */
} lprun_fn;

typedef struct {
    lprun_fn *fns; /* owned */
    Py_ssize_t n;
    double unit; /* output unit, seconds */
    int strip;
    int64_t wall; /* the statement's wall time under the profiler, ns, or -1 */
    const char *problem;
} lprun_report;

/* Fills rep (zeroed by the caller, with unit, strip and wall set) from prof,
 * functions sorted by (filename, first line, name) as line_profiler does.
 * Returns 0, or -1 with an exception set; clear rep either way. */
int lprun_report_gather(PyObject *prof, lprun_report *rep);

void lprun_report_clear(lprun_report *rep);

/* Append line_profiler's text layout (with wrap, source lines that would
 * pass REPORT_TEXT_COLS are wrapped, for display; without, it is exactly
 * line_profiler's, for files and LineStats) / the HTML report. The HTML is
 * left open for the caller's notes: close it with report_html_close(). */
void lprun_render_text(lprun_report *rep, report_buf *b, int wrap);
void lprun_render_html(lprun_report *rep, report_buf *b);

#endif
