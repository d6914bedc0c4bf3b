/* report.c - growable text buffer, HTML escaping and the shared stylesheet
 * used by every profiler's text and HTML rendering. */
#include "report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char report_css[] =
    "<style>\n"
    ".pyro{font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,12px)"
    ";"
    "color:var(--jp-content-font-color1,#111)}\n"
    ".pyro table{border-collapse:collapse;margin:4px 0}\n"
    ".pyro th{text-align:right;padding:2px 8px;border-bottom:1px solid "
    "var(--jp-border-color1,#aaa);"
    "font-weight:600}\n"
    ".pyro td{text-align:right;padding:1px 8px;white-space:pre}\n"
    ".pyro td.src,.pyro th.src,.pyro td.name,.pyro th.name{text-align:left}\n"
    ".pyro tr:hover td{background:var(--jp-layout-color2,#eee)}\n"
    ".pyro .bar{display:inline-block;height:0.8em;background:#e8743b;vertical-align:middle}\n"
    ".pyro .bar2{display:inline-block;height:0.8em;background:#4c8fd6;vertical-align:middle}\n"
    ".pyro .hot td{font-weight:600}\n"
    ".pyro .hdr{margin:6px 0 2px 0;color:var(--jp-content-font-color2,#555)}\n"
    ".pyro svg text{fill:#111;font-size:10px;pointer-events:none}\n"
    "</style>\n";

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

void report_buf_bar(report_buf *b, const char *cls, double px, int decimals)
{
    report_buf_printf(b, "<span class=\"%s\" style=\"width:%.*fpx\"></span>", cls, decimals, px);
}
