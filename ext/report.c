/* report.c - growable text buffer, HTML escaping and the house style (inline
 * styles, chart images, notes, footers, text wrapping) shared by
 * every profiler's text and HTML rendering. */
#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const report_palette[REPORT_PALETTE_N] = {"#9467bd", "#2ca02c", "#d62728", "#cc5599",
                                                      "#1f9e89"};

static int grow(report_buf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void report_buf_free(report_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

void report_buf_append(report_buf *b, const char *s, size_t n)
{
    if (grow(b, n) < 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void report_buf_puts(report_buf *b, const char *s)
{
    report_buf_append(b, s, strlen(s));
}

void report_buf_printf(report_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        report_buf_append(b, small, (size_t)n);
        return;
    }
    if (grow(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void report_buf_html(report_buf *b, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            continue;
        }
        report_buf_append(b, s + start, i - start);
        report_buf_puts(b, rep);
        start = i + 1;
    }
    report_buf_append(b, s + start, n - start);
}

void report_buf_pad(report_buf *b, size_t n)
{
    if (grow(b, n) < 0)
        return;
    memset(b->data + b->len, ' ', n);
    b->len += n;
    b->data[b->len] = '\0';
}

PyObject *report_buf_to_str(const report_buf *b)
{
    if (b->failed)
        return PyErr_NoMemory();
    return PyUnicode_DecodeUTF8(b->data ? b->data : "", (Py_ssize_t)b->len, "replace");
}

PyObject *report_bundle_new(const report_buf *text, const report_buf *html)
{
    PyObject *t = NULL, *h = NULL, *d = NULL;

    t = report_buf_to_str(text);
    if (t == NULL)
        goto error;
    h = report_buf_to_str(html);
    if (h == NULL)
        goto error;
    d = Py_BuildValue("{s:O,s:O}", "text/plain", t, "text/html", h);
error:
    Py_XDECREF(t);
    Py_XDECREF(h);
    return d;
}

long report_cell_number(const char *filename)
{
    const char *p;
    if (strncmp(filename, "<cell-", 6) == 0)
        p = filename + 6;
    else if (strncmp(filename, "<ipython-input-", 15) == 0)
        p = filename + 15;
    else
        return -1;
    char *end;
    long n = strtol(p, &end, 10);
    if (end == p || (*end != '>' && *end != '-'))
        return -1;
    return n;
}

int report_write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    int bad = n > 0 && fwrite(data, 1, n, f) != n;
    if (fclose(f) != 0 || bad) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    return 0;
}

int report_write_text(PyObject *path, PyObject *text)
{
    PyObject *fs = NULL;
    Py_ssize_t n;
    const char *data = PyUnicode_AsUTF8AndSize(text, &n);
    if (data == NULL || !PyUnicode_FSConverter(path, &fs))
        return -1;
    int rc = report_write_file(PyBytes_AS_STRING(fs), data, (size_t)n);
    Py_DECREF(fs);
    return rc;
}

void report_html_open(report_buf *b)
{
    report_buf_puts(b, "<div class=\"pyro\" style=\"" REPORT_FONT "\">\n");
}

void report_html_close(report_buf *b)
{
    report_buf_puts(b, "</div>\n");
}

void report_html_head(report_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[512];
    report_buf_puts(b, "<div class=\"pyro-head\" style=\"margin:2px 0 4px 0\">");
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        b->failed = 1;
    else if ((size_t)n < sizeof small)
        report_buf_append(b, small, (size_t)n);
    else {
        char *big = malloc((size_t)n + 1);
        if (big == NULL) {
            b->failed = 1;
        } else {
            va_start(ap, fmt);
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            va_end(ap);
            report_buf_append(b, big, (size_t)n);
            free(big);
        }
    }
    report_buf_puts(b, "</div>\n");
}

void report_html_footer(report_buf *b, Py_ssize_t shown, Py_ssize_t total, const char *what,
                        const char *hint)
{
    if (shown >= total && hint == NULL)
        return;
    report_buf_puts(b, "<div class=\"pyro-foot\" style=\"" REPORT_DIM ";margin:0 0 6px 0\">");
    if (shown < total)
        report_buf_printf(b, "Showing the top %zd of %zd %s. ", shown, total, what);
    if (hint != NULL)
        report_buf_html(b, hint, strlen(hint));
    report_buf_puts(b, "</div>\n");
}

void report_html_bar(report_buf *b, const char *colour, double px)
{
    report_buf_printf(b,
                      "<span class=\"pyro-bar\" style=\"display:inline-block;width:%.1fpx;"
                      "height:0.8em;background:%s;vertical-align:middle\"></span>",
                      px, colour);
}

int report_html_img_svg(report_buf *b, const report_buf *svg, double w, double h, const char *alt)
{
    PyObject *binascii = NULL, *raw = NULL, *enc = NULL;
    int rc = -1;

    if (svg->failed) {
        PyErr_NoMemory();
        return -1;
    }
    binascii = PyImport_ImportModule("binascii");
    if (binascii == NULL)
        goto done;
    raw = PyBytes_FromStringAndSize(svg->data ? svg->data : "", (Py_ssize_t)svg->len);
    if (raw == NULL)
        goto done;
    PyObject *fn = PyObject_GetAttrString(binascii, "b2a_base64");
    if (fn == NULL)
        goto done;
    PyObject *args = PyTuple_Pack(1, raw);
    PyObject *kw = Py_BuildValue("{s:O}", "newline", Py_False);
    enc = args && kw ? PyObject_Call(fn, args, kw) : NULL;
    Py_DECREF(fn);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    if (enc == NULL)
        goto done;
    if (!PyBytes_Check(enc)) {
        PyErr_SetString(PyExc_TypeError, "binascii.b2a_base64 did not return bytes");
        goto done;
    }
    report_buf_printf(b, "<img class=\"pyro-chart\" width=\"%.0f\" height=\"%.0f\" alt=\"", w, h);
    report_buf_html(b, alt, strlen(alt));
    report_buf_puts(b, "\" style=\"display:block;max-width:100%;height:auto;margin:4px 0\" "
                       "src=\"data:image/svg+xml;base64,");
    report_buf_append(b, PyBytes_AS_STRING(enc), (size_t)PyBytes_GET_SIZE(enc));
    report_buf_puts(b, "\">\n");
    rc = 0;
done:
    Py_XDECREF(binascii);
    Py_XDECREF(raw);
    Py_XDECREF(enc);
    return rc;
}

void report_note(report_buf *text, report_buf *html, const char *fmt, ...)
{
    report_buf line = REPORT_BUF_INIT;
    va_list ap;
    char small[512];

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        report_buf_append(&line, small, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        if (big == NULL) {
            if (text)
                text->failed = 1;
            if (html)
                html->failed = 1;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        report_buf_append(&line, big, (size_t)n);
        free(big);
    }
    if (text != NULL) {
        if (text->len > 0 && text->data[text->len - 1] != '\n')
            report_buf_puts(text, "\n");
        report_buf_append(text, line.data ? line.data : "", line.len);
    }
    if (html != NULL) {
        report_buf_puts(html, "<div class=\"pyro-note\" style=\"margin:4px 0\">");
        report_buf_html(html, line.data ? line.data : "", line.len);
        report_buf_puts(html, "</div>\n");
    }
    report_buf_free(&line);
}

/* Bytes of the UTF-8 prefix of s (n bytes) that spans at most cols code
 * points; *used gets the code points. */
static size_t utf8_prefix(const char *s, size_t n, size_t cols, size_t *used)
{
    size_t i = 0, c = 0;
    while (i < n && c < cols) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        c++;
    }
    *used = c;
    return i;
}

/* Where to cut the first cols code points of s (n bytes): before the last
 * space in its second half, so words stay whole, else at cols. */
static size_t wrap_point(const char *s, size_t n, size_t cols)
{
    size_t used, take = utf8_prefix(s, n, cols, &used);
    if (take >= n)
        return n;
    for (size_t i = take; i > take / 2; i--)
        if (s[i] == ' ' && s[i - 1] != ' ')
            return i;
    return take;
}

void report_text_source(report_buf *b, const char *prefix, size_t prefix_len, const char *src,
                        size_t src_len)
{
    size_t room = prefix_len + 16 < REPORT_TEXT_COLS ? REPORT_TEXT_COLS - prefix_len : 16;
    size_t take = wrap_point(src, src_len, room);
    report_buf_append(b, prefix, prefix_len);
    report_buf_append(b, src, take);
    while (take < src_len) {
        report_buf_puts(b, "\n");
        report_buf_pad(b, prefix_len);
        report_buf_puts(b, "\u21aa ");
        src += take;
        src_len -= take;
        take = wrap_point(src, src_len, room - 2);
        report_buf_append(b, src, take);
    }
    report_buf_puts(b, "\n");
}

void report_fmt_bytes(char *out, size_t n, int64_t bytes, int sign)
{
    double a = bytes < 0 ? -(double)bytes : (double)bytes;
    const char *unit = "B";
    int dec = 0;
    double v = a;
    if (a >= 1024.0 * 1024 * 1024) {
        v = a / (1024.0 * 1024 * 1024);
        unit = "GiB";
        dec = 2;
    } else if (a >= 1024.0 * 1024) {
        v = a / (1024.0 * 1024);
        unit = "MiB";
        dec = 2;
    } else if (a >= 1024) {
        v = a / 1024;
        unit = "KiB";
        dec = 1;
    }
    const char *s = bytes < 0 ? "-" : (sign && bytes > 0 ? "+" : "");
    snprintf(out, n, "%s%.*f %s", s, dec, v, unit);
}

void report_fmt_mib(char *out, size_t n, double mib, int decimals, int sign)
{
    double scale = 1;
    for (int i = 0; i < decimals; i++)
        scale *= 10;
    /* Values that print as zero are zero, without a sign. */
    if (fabs(mib) * scale < 0.5)
        mib = 0;
    snprintf(out, n, sign && mib != 0 ? "%+.*f MiB" : "%.*f MiB", decimals, mib);
}
