/* report.h - shared building blocks for rendering profiler results.
 *
 * A growable byte buffer (report_buf) with printf-style, HTML-escaping and
 * number-formatting appenders, plus the shared stylesheet. Each profiler lays
 * out its own tables with these; no Python objects are involved until
 * report_buf_to_str().
 */
#ifndef PYROMETER_REPORT_H
#define PYROMETER_REPORT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

typedef struct {
    char *data; /* owned, NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
    int failed; /* set once an allocation failed; later appends are no-ops */
} report_buf;

#define REPORT_BUF_INIT                                                                            \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

void report_buf_free(report_buf *b);
void report_buf_append(report_buf *b, const char *s, size_t n);
void report_buf_puts(report_buf *b, const char *s);
void report_buf_printf(report_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s with &, <, >, " and ' escaped for HTML text and attributes. */
void report_buf_html(report_buf *b, const char *s, size_t n);
/* Appends n spaces (for text-table padding). */
void report_buf_pad(report_buf *b, size_t n);

/* Returns a new str with the buffer's contents (decoded as UTF-8 with
 * "replace"), or NULL with MemoryError set if an append had failed. The
 * buffer is left untouched. */
PyObject *report_buf_to_str(const report_buf *b);

/* Returns a new dict {"text/plain": text, "text/html": html}, or NULL with an
 * exception set. Neither buffer is freed. */
PyObject *report_bundle_new(const report_buf *text, const report_buf *html);

/* Matches a notebook cell's filename, "<cell-N>" (pyrometer's kernel) or
 * "<ipython-input-N-hash>" (IPython): returns N, or -1 for any other name.
 * Reports name such code "In [N]". */
long report_cell_number(const char *filename);

/* Appends a horizontal bar, <span class="cls" style="width:Wpx"></span>,
 * W printed with `decimals` decimals; cls is "bar" (orange) or "bar2" (blue)
 * from report_css. */
void report_buf_bar(report_buf *b, const char *cls, double px, int decimals);

/* Writes n bytes of data to the file path (file-system encoded), replacing
 * it. Returns 0, or -1 with OSError set (naming path). */
int report_write_file(const char *path, const char *data, size_t n);

/* Writes the str text (as UTF-8) to path (a str, bytes or os.PathLike).
 * Returns 0, or -1 with an exception set. */
int report_write_text(PyObject *path, PyObject *text);

/* The <style> block every HTML report starts with. It uses JupyterLab's CSS
 * variables with fallbacks, so it reads in light and dark themes. */
extern const char report_css[];

#endif
