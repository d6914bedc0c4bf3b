/* report.h - shared building blocks for rendering profiler results.
 *
 * A growable byte buffer (report_buf) with printf-style, HTML-escaping and
 * number-formatting appenders, and the house style every report follows (read
 * it below before writing a renderer). Each profiler lays out its own tables
 * with these; no Python objects are involved until report_buf_to_str().
 */
#ifndef PYROMETER_REPORT_H
#define PYROMETER_REPORT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

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

/* Writes n bytes of data to the file path (file-system encoded), replacing
 * it. Returns 0, or -1 with OSError set (naming path). */
int report_write_file(const char *path, const char *data, size_t n);

/* Writes the str text (as UTF-8) to path (a str, bytes or os.PathLike).
 * Returns 0, or -1 with an exception set. */
int report_write_text(PyObject *path, PyObject *text);

/* ---- The house style of every HTML report ------------------------------------
 *
 * Reports are read where we do not control the page: JupyterLab 4 / Notebook 7
 * (trusted and untrusted, light and dark), classic Notebook, nbconvert HTML,
 * VS Code and GitHub (which sanitize like an untrusted notebook), terminals.
 * Every report, present and to come, follows these rules:
 *
 * - No <style> block, no class that needs one, no inline <svg>, no script:
 *   sanitizers drop them. Layout is inline style="..." using only properties
 *   JupyterLab's Sanitizer keeps (the REPORT_* strings below pass it; the
 *   test tests/magics/test_sanitized.py proves it for every report). Class
 *   names may stay on elements as markers for tests and users' own CSS.
 * - No fixed text colour: text inherits the page's, so it reads on light and
 *   dark. Secondary text is dimmed with opacity (REPORT_DIM); shading is a
 *   translucent rgba() background; bars use REPORT_ORANGE / REPORT_BLUE, which
 *   hold 3:1 against both white and JupyterLab's dark #111.
 * - Tables override the page's table CSS (JupyterLab centres tables, fixes
 *   their layout and right-aligns cells): REPORT_TABLE on <table>, REPORT_TH /
 *   REPORT_TD on numeric cells, REPORT_TH_L / REPORT_TD_L on names, and
 *   REPORT_TD_SRC on source code, which keeps its whitespace and wraps (never
 *   the column that is cut; numbers never wrap).
 * - A chart is a picture everywhere: an SVG document of its own (no CSS
 *   variables, text in REPORT_CHART_TEXT or dark text on light boxes, a
 *   transparent background) put in an <img> as a base64 data URI by
 *   report_html_img_svg(). Untrusted JupyterLab shows that; it strips inline
 *   <svg> and does not show an image/svg+xml output.
 * - A sane default length: at most REPORT_DEFAULT_ROWS rows unless the user
 *   asked for more; the footer (report_html_footer) says how many are shown
 *   and the option that shows more. Do not rely on <details> to hide bulk: a
 *   sanitizer may drop the element and show its content. A <details> that is
 *   used gets REPORT_SUMMARY on its <summary> (classic Notebook's CSS hides
 *   the disclosure triangle otherwise) and a label that says what opens.
 * - Every note of the text version is in the HTML too: write notes with
 *   report_note(), which appends to both.
 * - The text version fits REPORT_TEXT_COLS columns: source lines that would
 *   pass it are wrapped onto continuation rows (report_text_source).
 *
 * The layout of a report:
 *   report_html_open(b)                       <div> in the report font
 *   report_html_head(b, ...)                  one summary line
 *   <table style=REPORT_TABLE> ... </table>   rows with REPORT_TH / REPORT_TD...
 *   report_html_footer(b, ...)                "Showing 30 of 894 ...; -l N shows more"
 *   report_html_img_svg(b, svg, w, h, alt)    a chart
 *   report_note(text, html, ...)              notes, in both versions
 *   report_html_close(b)
 */

/* The report's font: monospace, so numbers line up. */
#define REPORT_FONT "font-family:monospace;font-size:12px;line-height:1.35"
#define REPORT_TABLE                                                                               \
    "border-collapse:collapse;table-layout:auto;width:auto;margin:2px 0 6px 0;font-size:12px"
/* Headings may wrap between words when the page is narrow ("Mem usage"). */
#define REPORT_TH_                                                                                 \
    "padding:2px 6px;border-bottom:1px solid rgba(128,128,128,0.6);font-weight:600;"               \
    "vertical-align:bottom;"
#define REPORT_TH   REPORT_TH_ "text-align:right"
#define REPORT_TH_L REPORT_TH_ "text-align:left"
#define REPORT_TD   "padding:1px 6px;white-space:nowrap;text-align:right;vertical-align:top"
#define REPORT_TD_L "padding:1px 6px;white-space:nowrap;text-align:left;vertical-align:top"
/* Source code: whitespace kept; long lines wrap, and the column narrows as
 * far as the page needs instead of being cut (the numbers never wrap). */
#define REPORT_TD_SRC                                                                              \
    "padding:1px 6px;white-space:pre-wrap;overflow-wrap:break-word;text-align:left;"               \
    "vertical-align:top;min-width:12em"
#define REPORT_DIM     "opacity:0.7"
#define REPORT_SUMMARY "display:list-item;cursor:pointer;margin:6px 0 2px 0;font-weight:600"
/* Translucent shading of a row: hot / holding memory, and releasing it. */
#define REPORT_SHADE_ORANGE "background:rgba(232,116,59,0.18)"
#define REPORT_SHADE_BLUE   "background:rgba(76,143,214,0.18)"
#define REPORT_ORANGE       "#e8743b"
#define REPORT_BLUE         "#4c8fd6"
/* Chart text: grey that contrasts at least 3:1 with white and with #111. */
#define REPORT_CHART_TEXT "#808080"
/* Colours for chart series beyond the two above, each at least 3:1 with
 * white and with #111 (REPORT_PALETTE_N of them). */
extern const char *const report_palette[];
#define REPORT_PALETTE_N 5

/* The default number of table rows when the user set no limit. */
#define REPORT_DEFAULT_ROWS 30
/* The width the text version fits in. */
#define REPORT_TEXT_COLS 100

/* Appends <div class="pyro" style="REPORT_FONT"> / its </div>. */
void report_html_open(report_buf *b);
void report_html_close(report_buf *b);

/* Appends one heading line (fmt is printf-style and NOT escaped: callers
 * escape what they pass, e.g. with report_buf_html into a buffer). */
void report_html_head(report_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends the footer under a table: "Showing the top <shown> of <total>
 * <what>." and, when shown < total, the hint (plain text, escaped here), e.g.
 * "%prun -l 100 shows 100; -T FILE writes them all". Nothing when shown ==
 * total and hint is NULL. */
void report_html_footer(report_buf *b, Py_ssize_t shown, Py_ssize_t total, const char *what,
                        const char *hint);

/* Appends a horizontal bar of px pixels in colour (REPORT_ORANGE, ...). */
void report_html_bar(report_buf *b, const char *colour, double px);

/* Appends <img src="data:image/svg+xml;base64,..."> of the SVG document svg
 * (a complete <svg xmlns=...>...</svg>), shown w x h px and shrunk to the
 * width of the page if narrower; alt (plain text, escaped here) describes it
 * for readers without images. Returns 0, or -1 with an exception set. */
int report_html_img_svg(report_buf *b, const report_buf *svg, double w, double h, const char *alt);

/* A note: appends the line to text (after a newline when text is not empty)
 * and, HTML-escaped, as a <div> to html. Either buffer may be NULL. */
void report_note(report_buf *text, report_buf *html, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends one row of a text table: prefix (the number columns, prefix_len
 * bytes, as wide as it is long) and the source line src. When the row would
 * pass REPORT_TEXT_COLS, the source is wrapped (before a space when there is
 * one) onto continuation rows that start under it with "\u21aa "; taking
 * those marks away and joining the pieces gives src back. A newline ends the
 * row. */
void report_text_source(report_buf *b, const char *prefix, size_t prefix_len, const char *src,
                        size_t src_len);

/* Formats a byte count: "640 B", "27.3 KiB", "50.00 MiB", "1.20 GiB"; with a
 * leading "+" for positive values if sign. A value that rounds to zero is
 * "0 B" (never "-0.0"). */
void report_fmt_bytes(char *out, size_t n, int64_t bytes, int sign);

/* Formats MiB with the given decimals and optional sign, never "-0.0". */
void report_fmt_mib(char *out, size_t n, double mib, int decimals, int sign);

#endif
