/* errors.c - formats a raised exception as IPython does in Jupyter: a list
 * of ANSI-coloured entries (header, one per frame with its surrounding
 * lines, the exception line), chained exceptions first. Reads sources from
 * the kernel's cell cache, and through linecache only for real files.
 * Owns the colour setting and %colors. */
#include "errors.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "magics.h"

/* 0 after `%colors NoColor`, 1 otherwise. Protected by the GIL. */
static int colors_on = 1;

/* Whether this traceback is coloured; set by errors_traceback. GIL. */
static int color;

#define RED    "\x1b[0;31m"
#define GREEN  "\x1b[0;32m"
#define BGREEN "\x1b[1;32m"
#define CYAN   "\x1b[0;36m"
#define BLUE   "\x1b[0;34m"
#define NORMAL "\x1b[0m"
#define HL     "\x1b[43m"
#define HL_END "\x1b[49m"

#define CONTEXT   2  /* lines shown before and after the current one */
#define MAX_CHAIN 16 /* chained exceptions shown at most */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* An escape sequence, only when colouring. */
static void esc(buf *b, const char *seq)
{
    if (color)
        puts_(b, seq);
}

static void putf(buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Appends b's text to arr as one entry and empties b. */
static void flush_entry(json_t *arr, buf *b)
{
    if (b->oom)
        return;
    json_t *s = json_stringn(b->p ? b->p : "", b->len);
    if (s == NULL) /* not UTF-8: shown with the bad bytes replaced */
        s = json_string("(undecodable text)");
    json_array_append_new(arr, s);
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

/* UTF-8 of str(obj) or of obj's attribute; "" when there is none. The
 * returned pointer lives as long as *keep, which the caller releases. */
static const char *utf8_of(PyObject *obj, PyObject **keep)
{
    *keep = obj ? PyObject_Str(obj) : NULL;
    const char *s = *keep ? PyUnicode_AsUTF8(*keep) : NULL;
    if (s == NULL) {
        PyErr_Clear();
        return "";
    }
    return s;
}

static PyObject *attr(PyObject *obj, const char *name)
{
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (v == NULL)
        PyErr_Clear();
    return v;
}

static long long_attr(PyObject *obj, const char *name, long dflt)
{
    PyObject *v = attr(obj, name);
    long r = v && PyLong_Check(v) ? PyLong_AsLong(v) : dflt;
    if (r == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        r = dflt;
    }
    Py_XDECREF(v);
    return r;
}

/* The exception's name as Jupyter shows it: the type's name, no module. */
static const char *exc_name(PyObject *exc)
{
    const char *n = Py_TYPE(exc)->tp_name, *dot = strrchr(n, '.');
    return dot ? dot + 1 : n;
}

/* "<cell-12>" -> "12", "<cell-3.7>" -> "3.7"; NULL for a real file. */
static int cell_number(const char *filename, char *out, size_t outlen)
{
    size_t n = strlen(filename);
    if (strncmp(filename, "<cell-", 6) != 0 || n < 8 || filename[n - 1] != '>')
        return 0;
    snprintf(out, outlen, "%.*s", (int)(n - 7), filename + 6);
    return 1;
}

/* "Cell In[N], line L" or "File path:L", coloured. */
static void put_location(buf *b, const char *filename, long line)
{
    char num[32];
    if (cell_number(filename, num, sizeof num)) {
        puts_(b, "Cell ");
        esc(b, GREEN);
        putf(b, "In[%s], line %ld", num, line);
    } else {
        puts_(b, "File ");
        esc(b, GREEN);
        puts_(b, filename);
        putf(b, ":%ld", line);
    }
    esc(b, NORMAL);
}

/* Returns a new list of the source lines of filename, or NULL (no
 * exception). Cells come from the kernel's cache; files through linecache. */
static PyObject *source_lines(PyObject *cells, PyObject *filename, PyObject *globals)
{
    PyObject *entry = cells ? PyDict_GetItemWithError(cells, filename) : NULL;
    if (entry != NULL && PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) >= 3 &&
        PyList_Check(PyTuple_GET_ITEM(entry, 2)))
        return Py_NewRef(PyTuple_GET_ITEM(entry, 2));
    PyErr_Clear();
    const char *f = PyUnicode_AsUTF8(filename);
    if (f == NULL || f[0] == '<') { /* no file to read */
        PyErr_Clear();
        return NULL;
    }
    PyObject *linecache = PyImport_ImportModule("linecache");
    PyObject *lines = linecache ? PyObject_CallMethod(linecache, "getlines", "OO", filename,
                                                      globals ? globals : Py_None)
                                : NULL;
    Py_XDECREF(linecache);
    if (lines == NULL || !PyList_Check(lines)) {
        PyErr_Clear();
        Py_XDECREF(lines);
        return NULL;
    }
    return lines;
}

/* The last line of code (the largest line co_lines() names), or 0. */
static long last_line(PyObject *code)
{
    long last = 0;
    PyObject *it = PyObject_CallMethod(code, "co_lines", NULL), *item;
    PyObject *iter = it ? PyObject_GetIter(it) : NULL;
    Py_XDECREF(it);
    while (iter && (item = PyIter_Next(iter)) != NULL) {
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 3 &&
            PyLong_Check(PyTuple_GET_ITEM(item, 2))) {
            long l = PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
            if (l > last)
                last = l;
        }
        Py_DECREF(item);
    }
    Py_XDECREF(iter);
    PyErr_Clear();
    return last;
}

/* The columns (UTF-8 bytes) of the instruction at byte offset lasti, when
 * it starts on line: 1 with *col and *end_col set (end_col -1: to the end
 * of the line), else 0. */
static int running_columns(PyObject *code, long lasti, long line, long *col, long *end_col)
{
    int found = 0;
    if (lasti < 0)
        return 0;
    PyObject *pos = PyObject_CallMethod(code, "co_positions", NULL);
    PyObject *iter = pos ? PyObject_GetIter(pos) : NULL, *item = NULL;
    Py_XDECREF(pos);
    for (long i = 0; iter && i <= lasti / 2; i++) {
        Py_XSETREF(item, PyIter_Next(iter));
        if (item == NULL)
            break;
    }
    if (item && PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 4) {
        PyObject *l = PyTuple_GET_ITEM(item, 0), *el = PyTuple_GET_ITEM(item, 1);
        PyObject *c = PyTuple_GET_ITEM(item, 2), *ec = PyTuple_GET_ITEM(item, 3);
        if (PyLong_Check(l) && PyLong_Check(c) && PyLong_AsLong(l) == line) {
            *col = PyLong_AsLong(c);
            *end_col = PyLong_Check(el) && PyLong_Check(ec) && PyLong_AsLong(el) == line
                           ? PyLong_AsLong(ec)
                           : -1;
            found = 1;
        }
    }
    Py_XDECREF(item);
    Py_XDECREF(iter);
    PyErr_Clear();
    return found;
}

/* One source line (without its newline), with bytes [col, end_col)
 * highlighted when colouring and col >= 0. */
static void put_source(buf *b, const char *s, size_t n, long col, long end_col)
{
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (end_col < 0 || (size_t)end_col > n)
        end_col = (long)n;
    if (!color || col < 0 || col >= end_col) {
        put(b, s, n);
        return;
    }
    put(b, s, (size_t)col);
    esc(b, HL);
    put(b, s + col, (size_t)(end_col - col));
    esc(b, HL_END);
    put(b, s + end_col, n - (size_t)end_col);
}

/* "(a, b, *args, **kw)": the names of code's parameters. */
static void put_signature(buf *b, PyObject *code)
{
    long argc = long_attr(code, "co_argcount", 0), kwc = long_attr(code, "co_kwonlyargcount", 0);
    long flags = long_attr(code, "co_flags", 0);
    PyObject *names = attr(code, "co_varnames");
    Py_ssize_t n = names && PyTuple_Check(names) ? PyTuple_GET_SIZE(names) : 0;
    long want = argc + kwc + ((flags & CO_VARARGS) != 0) + ((flags & CO_VARKEYWORDS) != 0);
    put(b, "(", 1);
    for (long i = 0; i < want && i < n; i++) {
        const char *nm = PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, i));
        if (nm == NULL) {
            PyErr_Clear();
            break;
        }
        if (i > 0)
            puts_(b, ", ");
        if (i == argc + kwc && (flags & CO_VARARGS))
            puts_(b, "*");
        else if (i >= argc + kwc)
            puts_(b, "**");
        puts_(b, nm);
    }
    put(b, ")", 1);
    Py_XDECREF(names);
}

/* One frame's entry: where, which function, and the lines around. */
static void put_frame(buf *b, PyObject *tb, PyObject *cells)
{
    PyObject *frame = attr(tb, "tb_frame");
    PyObject *code = frame ? attr(frame, "f_code") : NULL;
    PyObject *globals = frame ? attr(frame, "f_globals") : NULL;
    long line = long_attr(tb, "tb_lineno", 0), lasti = long_attr(tb, "tb_lasti", -1);
    PyObject *fname = code ? attr(code, "co_filename") : NULL;
    PyObject *qual = code ? attr(code, "co_qualname") : NULL, *keep_f = NULL, *keep_q = NULL;
    if (code && qual == NULL)
        qual = attr(code, "co_name");
    const char *f = utf8_of(fname, &keep_f), *q = utf8_of(qual, &keep_q);

    put_location(b, f, line);
    if (code && strcmp(q, "<module>") != 0) {
        puts_(b, ", in ");
        esc(b, CYAN);
        puts_(b, q);
        esc(b, BLUE);
        put_signature(b, code);
        esc(b, NORMAL);
    }
    put(b, "\n", 1);
    PyObject *lines = fname ? source_lines(cells, fname, globals) : NULL;
    Py_ssize_t nlines = lines ? PyList_GET_SIZE(lines) : 0;
    if (line >= 1 && line <= nlines) {
        long first = line - CONTEXT, last = line + CONTEXT;
        long code_first = long_attr(code, "co_firstlineno", 1), code_last = last_line(code);
        if (first < code_first)
            first = code_first;
        if (code_last >= line && last > code_last)
            last = code_last;
        if (first < 1)
            first = 1;
        if (last > nlines)
            last = nlines;
        for (long l = first; l <= last; l++) {
            Py_ssize_t sn;
            const char *s = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(lines, l - 1), &sn);
            if (s == NULL) {
                PyErr_Clear();
                continue;
            }
            long col = -1, end_col = -1;
            if (l == line) {
                char arrow[16];
                int digits = snprintf(arrow, sizeof arrow, "%ld", l);
                esc(b, GREEN);
                for (int i = digits + 2; i < 7; i++)
                    put(b, "-", 1);
                putf(b, "> %ld", l);
                esc(b, NORMAL);
                if (!running_columns(code, lasti, line, &col, &end_col))
                    col = -1;
            } else {
                esc(b, BGREEN);
                putf(b, "%7ld", l);
                esc(b, NORMAL);
            }
            put(b, " ", 1);
            put_source(b, s, (size_t)sn, col, end_col);
            put(b, "\n", 1);
        }
    }
    Py_XDECREF(lines);
    Py_XDECREF(keep_f);
    Py_XDECREF(keep_q);
    Py_XDECREF(fname);
    Py_XDECREF(qual);
    Py_XDECREF(globals);
    Py_XDECREF(code);
    Py_XDECREF(frame);
}

/* A SyntaxError's own lines: where, the text, a caret, the message. */
static void put_syntax_error(buf *b, PyObject *exc)
{
    PyObject *kf = NULL, *kt = NULL, *km = NULL;
    PyObject *fname = attr(exc, "filename"), *text = attr(exc, "text"), *msg = attr(exc, "msg");
    long line = long_attr(exc, "lineno", 0), off = long_attr(exc, "offset", 0);
    long end_off = long_attr(exc, "end_offset", 0), end_line = long_attr(exc, "end_lineno", 0);
    const char *f = fname && fname != Py_None ? utf8_of(fname, &kf) : "<unknown>";
    const char *t = text && text != Py_None ? utf8_of(text, &kt) : NULL;
    const char *m = msg && msg != Py_None ? utf8_of(msg, &km) : "";

    puts_(b, "  ");
    put_location(b, f, line);
    put(b, "\n", 1);
    if (t != NULL) {
        size_t n = strlen(t), lead = 0;
        while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
            n--;
        while (lead < n && (t[lead] == ' ' || t[lead] == '\t'))
            lead++;
        esc(b, RED);
        puts_(b, "    ");
        put(b, t + lead, n - lead);
        esc(b, NORMAL);
        put(b, "\n", 1);
        if (off >= 1) { /* offset counts characters from 1 */
            long start = off - 1 - (long)lead, carets = 1;
            if (end_off > off && (end_line == 0 || end_line == line))
                carets = end_off - off;
            puts_(b, "    ");
            for (long i = 0; i < start; i++)
                put(b, " ", 1);
            for (long i = 0; i < carets; i++)
                put(b, "^", 1);
            put(b, "\n", 1);
        }
    }
    esc(b, RED);
    puts_(b, exc_name(exc));
    esc(b, NORMAL);
    puts_(b, ": ");
    puts_(b, m);
    Py_XDECREF(kf);
    Py_XDECREF(kt);
    Py_XDECREF(km);
    Py_XDECREF(fname);
    Py_XDECREF(text);
    Py_XDECREF(msg);
}

/* The entries of one exception of a chain. */
static void put_exception(json_t *arr, buf *b, PyObject *exc, PyObject *cells)
{
    PyObject *tb = PyException_GetTraceback(exc);
    int syntax = PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_SyntaxError);
    if (!(syntax && tb == NULL)) {
        esc(b, RED);
        for (int i = 0; i < 75; i++)
            put(b, "-", 1);
        esc(b, NORMAL);
        flush_entry(arr, b);
        const char *name = exc_name(exc);
        esc(b, RED);
        puts_(b, name);
        esc(b, NORMAL);
        for (size_t i = strlen(name); i < 41; i++)
            put(b, " ", 1);
        puts_(b, " Traceback (most recent call last)");
        flush_entry(arr, b);
    }
    for (PyObject *t = Py_XNewRef(tb); t != NULL && t != Py_None;) {
        put_frame(b, t, cells);
        flush_entry(arr, b);
        PyObject *next = attr(t, "tb_next");
        Py_SETREF(t, next);
    }
    Py_XDECREF(tb);
    if (syntax) {
        put_syntax_error(b, exc);
    } else {
        PyObject *keep = NULL;
        const char *value = utf8_of(exc, &keep);
        esc(b, RED);
        puts_(b, exc_name(exc));
        esc(b, NORMAL);
        if (*value) {
            puts_(b, ": ");
            puts_(b, value);
        }
        Py_XDECREF(keep);
    }
    flush_entry(arr, b);
    /* PEP 678 notes, one entry each after the exception, as Python prints
     * them (e.g. %autosample's "%sample --last shows where ...") */
    PyObject *notes = attr(exc, "__notes__");
    if (notes != NULL && (PyList_Check(notes) || PyTuple_Check(notes))) {
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(notes); i++) {
            PyObject *n = PySequence_Fast_GET_ITEM(notes, i), *keep = NULL;
            const char *text = PyUnicode_Check(n) ? utf8_of(n, &keep) : NULL;
            if (text != NULL) {
                puts_(b, text);
                flush_entry(arr, b);
            }
            Py_XDECREF(keep);
        }
    }
    Py_XDECREF(notes);
}

int errors_colour_on(void)
{
    const char *no_color = getenv("NO_COLOR");
    return colors_on && !(no_color && *no_color);
}

json_t *errors_traceback(PyObject *exc, PyObject *cells)
{
    PyObject *chain[MAX_CHAIN];
    int cause[MAX_CHAIN]; /* cause[i]: chain[i] is chain[i-1]'s __cause__ */
    int n = 0;
    color = errors_colour_on();

    PyObject *type, *value, *tb; /* an error pending on entry is kept */
    PyErr_Fetch(&type, &value, &tb);
    chain[n] = Py_NewRef(exc);
    cause[n++] = 0;
    while (n < MAX_CHAIN) {
        PyObject *cur = chain[n - 1], *next = PyException_GetCause(cur);
        int is_cause = next != NULL;
        if (next == NULL) {
            PyObject *sup = attr(cur, "__suppress_context__");
            int suppress = sup == Py_True;
            Py_XDECREF(sup);
            if (!suppress)
                next = PyException_GetContext(cur);
        }
        int seen = 0;
        for (int i = 0; next && i < n; i++)
            seen |= chain[i] == next;
        if (next == NULL || seen) {
            Py_XDECREF(next);
            break;
        }
        chain[n] = next;
        cause[n++] = is_cause;
    }
    json_t *arr = json_array();
    buf b = {0};
    for (int i = n - 1; arr && i >= 0; i--) {
        put_exception(arr, &b, chain[i], cells);
        if (i > 0) {
            puts_(&b, cause[i] ? "\nThe above exception was the direct cause of the following "
                                 "exception:\n"
                               : "\nDuring handling of the above exception, another exception "
                                 "occurred:\n");
            flush_entry(arr, &b);
        }
    }
    for (int i = 0; i < n; i++)
        Py_DECREF(chain[i]);
    if (b.oom) {
        json_decref(arr);
        arr = NULL;
    }
    free(b.p);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return arr;
}

/* ---- %colors ------------------------------------------------------------- */

static PyObject *m_colors(PyObject *line, PyObject *cell)
{
    PyObject *s = PyObject_CallMethod(line, "strip", NULL);
    if (s == NULL)
        return NULL;
    const char *scheme = PyUnicode_AsUTF8(s);
    if (scheme == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    static const char *const on[] = {"linux", "lightbg", "neutral"};
    int known = strcasecmp(scheme, "nocolor") == 0;
    for (size_t i = 0; !known && i < sizeof on / sizeof on[0]; i++)
        known = strcasecmp(scheme, on[i]) == 0;
    if (!known) {
        magics_usage_error("%%colors: unknown scheme \"%s\". Schemes: NoColor, Linux, LightBG, "
                           "Neutral",
                           scheme);
        Py_DECREF(s);
        return NULL;
    }
    colors_on = strcasecmp(scheme, "nocolor") != 0;
    Py_DECREF(s);
    Py_RETURN_NONE;
}

int errors_register_magics(void)
{
    if (magics_register("colors", m_colors, NULL,
                        "%colors SCHEME\n\n"
                        "Turn the colour of tracebacks on or off.\n\n"
                        "SCHEME is NoColor (plain text) or Linux, LightBG or Neutral (ANSI\n"
                        "colour, as IPython's schemes); the environment's NO_COLOR also turns\n"
                        "colour off. It has no options.\n\n"
                        "Example:\n"
                        "  %colors NoColor") < 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot register %colors");
        return -1;
    }
    return 0;
}
