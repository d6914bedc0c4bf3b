/* funcprof/render.h - text and HTML rendering of %prun / %pstats results (a
 * sorted pstats.Stats): pstats' own text, an HTML table with bars, the
 * callers/callees view and an icicle graph (an SVG image).
 */
#ifndef PYROMETER_PRUN_RENDER_H
#define PYROMETER_PRUN_RENDER_H

#include "report.h"

typedef struct {
    PyObject *st;          /* borrowed pstats.Stats, sorted */
    PyObject *order;       /* borrowed list of labels to show, in order */
    int open_callers;      /* open the callers/callees view */
    int limited;           /* the user gave -l: show every listed row (up to 500) */
    const char *more_hint; /* footer when rows are left out: how to see them */
    const char *note;      /* notes of the text version, one per line, or NULL */
} prun_html_args;

/* Runs st.<method>(*args) with st.stream set to a fresh StringIO; returns
 * the new str it printed (right-stripped), or NULL with an exception set. */
PyObject *prun_render_capture(PyObject *st, const char *method, PyObject *args);

/* Appends text, pstats' print_callers or print_callees output, to b with
 * its function column narrowed so that lines fit REPORT_TEXT_COLS: pstats
 * pads that column to the longest name of the whole profile. A name longer
 * than the narrowed column gets a line of its own. Lines before the
 * "Function" heading, and text in any other shape, are appended as they
 * are. */
void prun_render_fit_calls(report_buf *b, const char *text);

/* Returns a new list: the labels st would print for limits lims (a tuple of
 * -l values), or NULL with an exception set. st.stream is restored. */
PyObject *prun_render_print_list(PyObject *st, PyObject *lims);

/* Appends the whole HTML report (stylesheet included) to b. Returns 0, or -1
 * with an exception set (b then holds a partial report). */
int prun_render_html(report_buf *b, const prun_html_args *a);

#endif
