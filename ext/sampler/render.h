/* sampler/render.h - what %sample shows and writes: the condensed call tree,
 * the flame graph, per-line heat of cell code, collapsed stacks, speedscope.
 *
 * Every function takes a profile as sampler_data_to_python() makes it (a
 * dict with "stacks", "duration", ...). GIL held throughout.
 */
#ifndef PYROMETER_SAMPLER_RENDER_H
#define PYROMETER_SAMPLER_RENDER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "report.h"

/* Returns a new list of stacks where asyncio's event loop frames are
 * replaced by the running task's coroutine chain under a "[task] NAME"
 * frame, and a loop waiting for I/O or timers by an "[await]" frame.
 * NULL with an exception set. */
PyObject *sample_render_async(PyObject *stacks);

/* Returns a new list of the stacks with every frame above the outermost
 * frame of a notebook cell removed (a front end's own frames), and sets
 * *found when some stack has a cell frame. Then a stack without one (the
 * shell's work before or after the cell) keeps no frame; with none at all
 * (a host that does not name its cells) the stacks are returned as they
 * are. NULL with an exception set. */
PyObject *sample_render_from_cell(PyObject *stacks, int *found);

/* Appends the report: a header line (title, seconds, samples), the
 * condensed call tree (its largest `rows` rows), a flame graph (HTML: an
 * <img> of an SVG), and the line heat of code defined in cells. Returns 0,
 * or -1 with an exception set (the buffers may hold part of the report). */
int sample_render_report(PyObject *prof, const char *title, int rows, report_buf *text,
                         report_buf *html);

/* Appends flamegraph.pl's collapsed format: "frame;frame;... samples\n"
 * per distinct stack, outermost frame first, the thread as the first frame
 * when there are several. Returns 0, or -1 with an exception set. */
int sample_render_collapsed(PyObject *prof, report_buf *out);

/* Returns a new str: the profile as speedscope's JSON file format (one
 * sampled profile per thread, weights in seconds), or NULL with an
 * exception set. */
PyObject *sample_render_speedscope(PyObject *prof);

#endif
