/* funcprof/render.h - text and HTML rendering of %prun / %pstats results (a
 * sorted pstats.Stats): pstats' own text, an HTML table with bars, the
 * callers/callees view and an SVG icicle graph.
 */
#ifndef PYROMETER_PRUN_RENDER_H
#define PYROMETER_PRUN_RENDER_H

#include "report.h"

typedef struct {
    PyObject *st;     /* borrowed pstats.Stats, sorted */
    PyObject *order;  /* borrowed list of labels to show, in order */
    int open_callers; /* open the callers/callees view */
    const char *note; /* extra line (messages), or NULL */
} prun_html_args;

/* Runs st.<method>(*args) with st.stream set to a fresh StringIO; returns
 * the new str it printed (right-stripped), or NULL with an exception set. */
PyObject *prun_render_capture(PyObject *st, const char *method, PyObject *args);

/* Returns a new list: the labels st would print for limits lims (a tuple of
 * -l values), or NULL with an exception set. st.stream is restored. */
PyObject *prun_render_print_list(PyObject *st, PyObject *lims);

/* Appends the whole HTML report (stylesheet included) to b. Returns 0, or -1
 * with an exception set (b then holds a partial report). */
int prun_render_html(report_buf *b, const prun_html_args *a);

#endif
