/* options.c - the table-driven option parser of the magics.
 *
 * Owns the splitting of a magic's line into options and statement, the
 * conversion of option values (str, int, float) and the UsageError messages
 * for bad options. What the options mean stays with each magic.
 */
#include "options.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int options_blank(const char *s)
{
    for (; *s; s++)
        if (!is_space(*s))
            return 0;
    return 1;
}

PyObject *options_statement(const options_parsed *o, PyObject *cell)
{
    if (cell == Py_None)
        return PyUnicode_FromString(o->rest);
    if (options_blank(o->rest))
        return Py_NewRef(cell);
    return PyUnicode_FromFormat("%s\n%U", o->rest, cell);
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int options_raise_v(PyObject *cls, const options_magic *m, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    PyErr_Format(cls ? cls : PyExc_ValueError, "%s: %s\n%s", m->name, msg, m->usage);
    return -1;
}

int options_usage_error(PyObject *module, const options_magic *m, const char *fmt, ...)
{
    PyObject *cls = PyObject_GetAttrString(module, "UsageError");
    if (cls == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    options_raise_v(cls, m, fmt, ap);
    va_end(ap);
    Py_DECREF(cls);
    return -1;
}

void options_take_error(char *buf, size_t n)
{
    PyObject *exc, *val, *tb;
    PyErr_Fetch(&exc, &val, &tb);
    PyErr_NormalizeException(&exc, &val, &tb);
    PyObject *msg = val ? PyObject_Str(val) : NULL;
    const char *m = msg ? PyUnicode_AsUTF8(msg) : NULL;
    snprintf(buf, n, "%s: %s", exc ? ((PyTypeObject *)exc)->tp_name : "error", m ? m : "");
    PyErr_Clear();
    Py_XDECREF(msg);
    Py_XDECREF(exc);
    Py_XDECREF(val);
    Py_XDECREF(tb);
}

/* Length of the Python expression at s: up to whitespace outside brackets
 * and quotes (a backslash escapes inside quotes). */
static size_t expr_len(const char *s)
{
    int depth = 0;
    char quote = 0;
    size_t i = 0;
    for (; s[i]; i++) {
        char ch = s[i];
        if (quote) {
            if (ch == '\\' && s[i + 1])
                i++;
            else if (ch == quote)
                quote = 0;
            continue;
        }
        if (ch == '\'' || ch == '"')
            quote = ch;
        else if (ch == '(' || ch == '[' || ch == '{')
            depth++;
        else if ((ch == ')' || ch == ']' || ch == '}') && depth > 0)
            depth--;
        else if (is_space(ch) && depth == 0)
            break;
    }
    return i;
}

/* Reads the shell-style word at *p (up to unquoted whitespace; quotes
 * stripped) into a new str and advances *p. Returns NULL with an exception
 * set on failure. */
static PyObject *read_word(const char **p)
{
    const char *s = *p;
    char *buf = PyMem_Malloc(strlen(s) + 1), *w = buf;
    if (buf == NULL)
        return PyErr_NoMemory();
    while (*s && !is_space(*s)) {
        if (*s == '"' || *s == '\'') {
            char q = *s++;
            while (*s && *s != q)
                *w++ = *s++;
            if (*s == q)
                s++;
        } else {
            *w++ = *s++;
        }
    }
    *p = s;
    PyObject *word = PyUnicode_DecodeUTF8(buf, w - buf, NULL);
    PyMem_Free(buf);
    return word;
}

/* "-l -s -r --threads": the options of m, for the unknown-option message. */
static void known_options(const options_magic *m, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < m->nspecs; i++) {
        const options_spec *s = &m->specs[i];
        int w = s->short_name
                    ? snprintf(buf + len, n - len, "%s-%c", len ? " " : "", s->short_name)
                    : snprintf(buf + len, n - len, "%s--%s", len ? " " : "", s->long_name);
        if (w < 0 || (size_t)w >= n - len)
            break;
        len += (size_t)w;
    }
}

static int store(options_parsed *o, int i, int repeat, PyObject *v)
{
    if (o->values[i] == NULL) {
        o->values[i] = PyList_New(0);
        if (o->values[i] == NULL)
            return -1;
    } else if (!repeat &&
               PyList_SetSlice(o->values[i], 0, PyList_GET_SIZE(o->values[i]), NULL) < 0) {
        return -1;
    }
    return PyList_Append(o->values[i], v);
}

/* Reads the value of spec at *p (which is at a non-space) and stores it as
 * option i. Returns 0, or -1 with an exception set. */
static int take_value(PyObject *module, const options_magic *m, int i, const char **p,
                      options_parsed *o)
{
    const options_spec *s = &m->specs[i];
    PyObject *word, *v = NULL;
    char opt[64];

    if (s->short_name)
        snprintf(opt, sizeof opt, "-%c", s->short_name);
    else
        snprintf(opt, sizeof opt, "--%s", s->long_name);
    if (s->kind == OPTIONS_EXPR) {
        size_t n = expr_len(*p);
        word = PyUnicode_DecodeUTF8(*p, (Py_ssize_t)n, NULL);
        *p += n;
    } else {
        word = read_word(p);
    }
    if (word == NULL)
        return -1;
    const char *txt = PyUnicode_AsUTF8(word);
    if (txt == NULL) {
        PyErr_Clear();
        txt = "?";
    }
    if (s->kind == OPTIONS_INT) {
        char *end;
        long x = strtol(txt, &end, 10);
        if (end == txt || *end != '\0' || (double)x < s->min) {
            if (s->bad)
                options_usage_error(module, m, s->bad, txt);
            else
                options_usage_error(module, m, "expected an integer >= %ld, got '%s'", (long)s->min,
                                    txt);
            goto error;
        }
        v = PyLong_FromLong(x);
    } else if (s->kind == OPTIONS_FLOAT) {
        char *end;
        double x = strtod(txt, &end);
        if (end == txt || *end != '\0' || !isfinite(x) || !(x >= s->min) ||
            (s->strict && !(x > s->min))) {
            if (s->bad)
                options_usage_error(module, m, s->bad, txt);
            else
                options_usage_error(module, m, "%s expects a number %s %g, got '%s'", opt,
                                    s->strict ? ">" : ">=", s->min, txt);
            goto error;
        }
        v = PyFloat_FromDouble(x);
    } else {
        v = Py_NewRef(word);
    }
    if (v == NULL || store(o, i, s->repeat, v) < 0)
        goto error;
    Py_DECREF(word);
    Py_DECREF(v);
    return 0;
error:
    Py_DECREF(word);
    Py_XDECREF(v);
    return -1;
}

static int missing_value(PyObject *module, const options_magic *m, const options_spec *s)
{
    char opt[64];
    if (s->short_name)
        snprintf(opt, sizeof opt, "-%c", s->short_name);
    else
        snprintf(opt, sizeof opt, "--%s", s->long_name);
    return options_usage_error(module, m, "option %s needs %s%s%s", opt,
                               s->needs ? s->needs : "a value", s->example ? ", e.g. " : "",
                               s->example ? s->example : "");
}

static const char *skip_space(const char *p)
{
    while (is_space(*p))
        p++;
    return p;
}

int options_parse(PyObject *module, const options_magic *m, const char *line, options_parsed *o)
{
    const char *p = line;
    char known[160];

    memset(o, 0, sizeof *o);
    o->rest = "";
    if (m->positional && (o->positional = PyList_New(0)) == NULL)
        return -1;
    known_options(m, known, sizeof known);
    for (;;) {
        p = skip_space(p);
        if (*p == '\0')
            break;
        if (p[0] == '-' && p[1] == '-' && (p[2] == '\0' || is_space(p[2]))) {
            p += 2; /* "--" ends the options */
            if (m->positional)
                continue;
            p = skip_space(p);
            break;
        }
        if (p[0] == '-' && p[1] == '-' && is_alpha(p[2])) {
            /* --name, --name value, --name=value */
            const char *name = p + 2, *e = name;
            int i;
            while (*e && !is_space(*e) && *e != '=')
                e++;
            for (i = 0; i < m->nspecs; i++) {
                const char *ln = m->specs[i].long_name;
                if (ln && strlen(ln) == (size_t)(e - name) &&
                    strncmp(ln, name, (size_t)(e - name)) == 0)
                    break;
            }
            if (i == m->nspecs)
                return options_usage_error(module, m, "unknown option --%.*s; the options are %s",
                                           (int)(e - name), name, known);
            const options_spec *s = &m->specs[i];
            p = e;
            if (s->kind == OPTIONS_FLAG) {
                if (*p == '=')
                    return options_usage_error(module, m, "option --%s takes no value",
                                               s->long_name);
                if (store(o, i, s->repeat, Py_True) < 0)
                    return -1;
                continue;
            }
            p = *p == '=' ? p + 1 : skip_space(p);
            if (*p == '\0' || is_space(*p))
                return missing_value(module, m, s);
            if (take_value(module, m, i, &p, o) < 0)
                return -1;
            continue;
        }
        if (p[0] != '-' || !is_alpha(p[1])) {
            /* Not an option: the statement (or a positional word). */
            if (!m->positional)
                break;
            PyObject *w = read_word(&p);
            if (w == NULL || PyList_Append(o->positional, w) < 0) {
                Py_XDECREF(w);
                return -1;
            }
            Py_DECREF(w);
            continue;
        }
        /* A cluster of short options: -rq, -l10, -ql 10. */
        for (p++; *p && !is_space(*p);) {
            char c = *p++;
            int i;
            for (i = 0; i < m->nspecs; i++)
                if (m->specs[i].short_name == c)
                    break;
            if (i == m->nspecs)
                return options_usage_error(module, m, "unknown option -%c; the options are %s", c,
                                           known);
            const options_spec *s = &m->specs[i];
            if (s->kind == OPTIONS_FLAG) {
                if (store(o, i, s->repeat, Py_True) < 0)
                    return -1;
                continue;
            }
            p = skip_space(p);
            if (*p == '\0')
                return missing_value(module, m, s);
            if (take_value(module, m, i, &p, o) < 0)
                return -1;
            break; /* a value ends the cluster */
        }
    }
    o->rest = p;
    return 0;
}

void options_clear(options_parsed *o)
{
    for (int i = 0; i < OPTIONS_MAX; i++)
        Py_CLEAR(o->values[i]);
    Py_CLEAR(o->positional);
}

int options_given(const options_parsed *o, int i)
{
    return o->values[i] != NULL;
}

Py_ssize_t options_count(const options_parsed *o, int i)
{
    return o->values[i] ? PyList_GET_SIZE(o->values[i]) : 0;
}

const char *options_str_at(const options_parsed *o, int i, Py_ssize_t k)
{
    if (k < 0 || k >= options_count(o, i))
        return NULL;
    PyObject *v = PyList_GET_ITEM(o->values[i], k);
    if (!PyUnicode_Check(v))
        return NULL;
    const char *s = PyUnicode_AsUTF8(v);
    if (s == NULL)
        PyErr_Clear();
    return s;
}

PyObject *options_last(const options_parsed *o, int i)
{
    Py_ssize_t n = options_count(o, i);
    return n ? PyList_GET_ITEM(o->values[i], n - 1) : NULL;
}

long options_long(const options_parsed *o, int i, long dflt)
{
    PyObject *v = options_last(o, i);
    if (v == NULL || !PyLong_Check(v))
        return dflt;
    return PyLong_AsLong(v);
}

double options_double(const options_parsed *o, int i, double dflt)
{
    PyObject *v = options_last(o, i);
    if (v == NULL || !PyFloat_Check(v))
        return dflt;
    return PyFloat_AS_DOUBLE(v);
}

/* ---- the help text -------------------------------------------------------- */

/* Appends text to *out (a growing str). Returns 0, or -1 with *out cleared. */
static int add_text(PyObject **out, const char *text)
{
    PyUnicode_AppendAndDel(out, PyUnicode_FromString(text));
    return *out ? 0 : -1;
}

#define HELP_WIDTH  79 /* the help text's lines fit in this */
#define HELP_INDENT 23 /* where an option's meaning starts */

/* Appends "  -x, --name META", then the meaning from column HELP_INDENT,
 * wrapped at word boundaries to HELP_WIDTH. */
static int add_option(PyObject **out, const options_spec *s)
{
    char left[96], line[HELP_WIDTH + 2], help[1024];
    int n = 0;
    if (s->short_name)
        n = snprintf(left, sizeof left, "  -%c", s->short_name);
    if (s->long_name)
        n += snprintf(left + n, sizeof left - (size_t)n, "%s--%s", n ? ", " : "  ", s->long_name);
    if (s->kind != OPTIONS_FLAG && (size_t)n < sizeof left)
        snprintf(left + n, sizeof left - (size_t)n, " %s", s->meta ? s->meta : "VALUE");
    snprintf(help, sizeof help, "%s%s", s->help ? s->help : "", s->repeat ? " (repeatable)" : "");
    size_t col = strlen(left);
    if (add_text(out, left) < 0)
        return -1;
    if (col >= HELP_INDENT - 1) { /* a long option: its meaning starts below */
        if (add_text(out, "\n") < 0)
            return -1;
        col = 0;
    }
    const char *h = help;
    while (*h) {
        size_t room = HELP_WIDTH - HELP_INDENT, len = strlen(h);
        size_t take = len;
        if (len > room) {
            take = room;
            while (take > 0 && h[take] != ' ')
                take--;
            if (take == 0)
                take = room;
        }
        snprintf(line, sizeof line, "%*s%.*s\n", (int)(HELP_INDENT - col), "", (int)take, h);
        if (add_text(out, line) < 0)
            return -1;
        col = 0;
        h += take;
        while (*h == ' ')
            h++;
    }
    if (help[0] == '\0' && add_text(out, "\n") < 0)
        return -1;
    return 0;
}

PyObject *options_help(const options_magic *m)
{
    /* The usage lines without "usage: " and their alignment to it. */
    PyObject *out = PyUnicode_FromString("");
    for (const char *u = m->usage; out && *u;) {
        if (strncasecmp(u, "usage: ", 7) == 0)
            u += 7;
        while (*u == ' ')
            u++;
        const char *nl = strchr(u, '\n');
        size_t n = nl ? (size_t)(nl - u) : strlen(u);
        PyUnicode_AppendAndDel(&out, PyUnicode_FromStringAndSize(u, (Py_ssize_t)n));
        if (out != NULL && add_text(&out, "\n") < 0)
            return NULL;
        u += n + (nl != NULL);
    }
    if (out == NULL)
        return NULL;
    if (m->forms && (add_text(&out, m->forms) < 0 || add_text(&out, "\n") < 0))
        return NULL;
    if (m->summary &&
        (add_text(&out, "\n") < 0 || add_text(&out, m->summary) < 0 || add_text(&out, "\n") < 0))
        return NULL;
    if (m->details &&
        (add_text(&out, "\n") < 0 || add_text(&out, m->details) < 0 || add_text(&out, "\n") < 0))
        return NULL;
    if (m->nspecs > 0 && add_text(&out, "\nOptions:\n") < 0)
        return NULL;
    for (int i = 0; i < m->nspecs; i++)
        if (add_option(&out, &m->specs[i]) < 0)
            return NULL;
    if (m->example && (add_text(&out, "\nExample:\n") < 0 || add_text(&out, m->example) < 0 ||
                       add_text(&out, "\n") < 0))
        return NULL;
    return out;
}
