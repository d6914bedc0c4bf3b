/* introspect.c - complete_request, inspect_request and the text behind obj?
 * and obj??. The cursor's context (magic, shell line, string, dict key,
 * comment) is read here in code points, as protocol 5.2 counts them; names,
 * attributes and imports come from jedi when it is importable, else from
 * rlcompleter. Nothing in the user namespace is called: names resolve by
 * dict lookup and getattr only. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "introspect.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "interp.h"
#include "log.h"
#include "errors.h"
#include "magics.h"
#include "session.h"

#define MAX_MATCHES     1000 /* path and key listings stop there */
#define MAX_STRING_FORM 200

/* The code being completed or inspected, as code points. */
typedef struct {
    PyObject *text; /* owned: the code */
    Py_UCS4 *u;     /* owned (PyMem): its code points */
    Py_ssize_t n;   /* length in code points */
    Py_ssize_t cur; /* the cursor, clamped to [0, n] */
} cell;

/* Matches as they are found: one replacement range for all of them. */
typedef struct {
    PyObject *matches; /* owned: list of str */
    PyObject *types;   /* owned: list of str, parallel to matches */
    PyObject *seen;    /* owned: set of str, to drop duplicates */
    Py_ssize_t start, end;
} result;

/* jedi: the module, or Py_None once it proved unimportable (or
 * PYROMETER_NO_JEDI is set). Protected by the GIL. */
static PyObject *jedi_mod;

/* ---- the cell ---------------------------------------------------------- */

static int cell_init(cell *c, const char *code, long cursor_pos)
{
    memset(c, 0, sizeof *c);
    c->text = PyUnicode_DecodeUTF8(code, (Py_ssize_t)strlen(code), "replace");
    if (c->text == NULL)
        return -1;
    c->u = PyUnicode_AsUCS4Copy(c->text);
    if (c->u == NULL) {
        Py_CLEAR(c->text);
        return -1;
    }
    c->n = PyUnicode_GET_LENGTH(c->text);
    c->cur = cursor_pos < 0 ? 0 : cursor_pos > c->n ? c->n : (Py_ssize_t)cursor_pos;
    return 0;
}

static void cell_clear(cell *c)
{
    Py_CLEAR(c->text);
    PyMem_Free(c->u);
    c->u = NULL;
}

static int is_id(Py_UCS4 ch)
{
    return ch == '_' || Py_UNICODE_ISALNUM(ch);
}

static int is_space(Py_UCS4 ch)
{
    return ch == ' ' || ch == '\t';
}

/* Start of the identifier that ends at i. */
static Py_ssize_t id_start(const cell *c, Py_ssize_t i)
{
    while (i > 0 && is_id(c->u[i - 1]))
        i--;
    return i;
}

/* Start of the dotted name (a.b.c) that ends at i; when what precedes the
 * last dot is not a plain name (x[0].up), the start of the last identifier. */
static Py_ssize_t chain_start(const cell *c, Py_ssize_t i)
{
    Py_ssize_t s = i;
    while (s > 0 && (is_id(c->u[s - 1]) || c->u[s - 1] == '.'))
        s--;
    if (s < i && (c->u[s] == '.' || Py_UNICODE_ISDIGIT(c->u[s])))
        s = id_start(c, i); /* starts with a dot or a digit: not a name */
    if (s < i && s > 0 && (c->u[s - 1] == ')' || c->u[s - 1] == ']'))
        s = id_start(c, i);
    return s;
}

static PyObject *substr(const cell *c, Py_ssize_t a, Py_ssize_t b)
{
    return PyUnicode_Substring(c->text, a, b);
}

/* Where the cursor is: in code, in a string, or in a comment. */
enum { IN_CODE, IN_STRING, IN_COMMENT };

/* Scans the code up to the cursor. For IN_STRING, *quote is the index of the
 * opening quote and *content the index of the string's first character. */
static int scan(const cell *c, Py_ssize_t *quote, Py_ssize_t *content)
{
    Py_ssize_t i = 0;
    while (i < c->cur) {
        Py_UCS4 ch = c->u[i];
        if (ch == '#') {
            while (i < c->cur && c->u[i] != '\n')
                i++;
            if (i == c->cur)
                return IN_COMMENT;
            continue;
        }
        if (ch != '\'' && ch != '"') {
            i++;
            continue;
        }
        int triple = i + 2 < c->n && c->u[i + 1] == ch && c->u[i + 2] == ch;
        Py_ssize_t q = i, j = i + (triple ? 3 : 1);
        int closed = 0;
        while (j < c->cur) {
            if (c->u[j] == '\\') {
                j += 2;
                continue;
            }
            if (!triple && c->u[j] == '\n')
                break; /* unterminated: the string ends with its line */
            if (c->u[j] == ch &&
                (!triple || (j + 2 < c->n && c->u[j + 1] == ch && c->u[j + 2] == ch))) {
                j += triple ? 3 : 1;
                closed = 1;
                break;
            }
            j++;
        }
        if (!closed && j >= c->cur) {
            *quote = q;
            *content = q + (triple ? 3 : 1);
            return *content <= c->cur ? IN_STRING : IN_CODE;
        }
        i = j;
    }
    return IN_CODE;
}

/* ---- results ----------------------------------------------------------- */

static int result_init(result *r, Py_ssize_t start, Py_ssize_t end)
{
    r->matches = PyList_New(0);
    r->types = PyList_New(0);
    r->seen = PySet_New(NULL);
    r->start = start;
    r->end = end;
    return r->matches && r->types && r->seen ? 0 : -1;
}

static void result_clear(result *r)
{
    Py_CLEAR(r->matches);
    Py_CLEAR(r->types);
    Py_CLEAR(r->seen);
}

/* Appends m (borrowed) unless it is already there. Returns 0 or -1. */
static int add(result *r, PyObject *m, const char *type)
{
    int has = PySet_Contains(r->seen, m);
    if (has != 0)
        return has < 0 ? -1 : 0;
    PyObject *t = PyUnicode_FromString(type);
    int rc = t == NULL || PySet_Add(r->seen, m) < 0 || PyList_Append(r->matches, m) < 0 ||
             PyList_Append(r->types, t) < 0;
    Py_XDECREF(t);
    return rc ? -1 : 0;
}

/* Appends prefix + name, with prefix a str or NULL. */
static int add_prefixed(result *r, PyObject *prefix, PyObject *name, const char *type)
{
    if (prefix == NULL)
        return add(r, name, type);
    PyObject *m = PyUnicode_Concat(prefix, name);
    if (m == NULL)
        return -1;
    int rc = add(r, m, type);
    Py_DECREF(m);
    return rc;
}

static json_t *reply_of(result *r)
{
    json_t *matches = json_array(), *types = json_array();
    Py_ssize_t n = r->matches ? PyList_GET_SIZE(r->matches) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *m = PyUnicode_AsUTF8(PyList_GET_ITEM(r->matches, i));
        const char *t = PyUnicode_AsUTF8(PyList_GET_ITEM(r->types, i));
        if (m == NULL || t == NULL) {
            PyErr_Clear();
            continue;
        }
        json_array_append_new(matches, json_string(m));
        json_array_append_new(types, json_pack("{s:I, s:I, s:s, s:s, s:s}", "start",
                                               (json_int_t)r->start, "end", (json_int_t)r->end,
                                               "text", m, "type", t, "signature", ""));
    }
    return json_pack("{s:s, s:o, s:I, s:I, s:{s:o}}", "status", "ok", "matches", matches,
                     "cursor_start", (json_int_t)r->start, "cursor_end", (json_int_t)r->end,
                     "metadata", "_jupyter_types_experimental", types);
}

/* Logs the pending exception (one line) and clears it. */
static void log_exception(const char *what)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *s = value ? PyObject_Repr(value) : NULL;
    const char *t = s ? PyUnicode_AsUTF8(s) : NULL;
    log_msg("%s: %.300s", what, t ? t : "unknown error");
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
}

/* ---- resolving names without calling anything ---------------------------- */

/* The value of a global name: the user namespace, then builtins (dict
 * lookups only). Borrowed; NULL with no exception when there is none. */
static PyObject *global_lookup(PyObject *name)
{
    PyObject *ns = interp_user_ns();
    PyObject *obj = PyDict_GetItemWithError(ns, name);
    if (obj == NULL && !PyErr_Occurred()) {
        PyObject *b = PyDict_GetItemString(ns, "__builtins__");
        if (b != NULL && PyModule_Check(b))
            b = PyModule_GetDict(b);
        if (b != NULL && PyDict_Check(b))
            obj = PyDict_GetItemWithError(b, name);
    }
    if (obj == NULL)
        PyErr_Clear();
    return obj;
}

/* Returns a new reference to the value of a dotted name (user namespace,
 * then builtins, then getattr for each further part), or NULL with no
 * exception set when it does not resolve. */
static PyObject *resolve(PyObject *dotted)
{
    PyObject *dot = PyUnicode_FromString(".");
    PyObject *parts = dot ? PyUnicode_Split(dotted, dot, -1) : NULL;
    Py_XDECREF(dot);
    PyObject *obj = NULL;
    if (parts == NULL)
        goto error;
    Py_ssize_t n = PyList_GET_SIZE(parts);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyList_GET_ITEM(parts, i);
        if (!PyUnicode_Check(name) || !PyUnicode_IsIdentifier(name))
            goto error;
    }
    obj = global_lookup(PyList_GET_ITEM(parts, 0));
    if (obj == NULL)
        goto error;
    Py_INCREF(obj);
    for (Py_ssize_t i = 1; i < n; i++) {
        Py_SETREF(obj, PyObject_GetAttr(obj, PyList_GET_ITEM(parts, i)));
        if (obj == NULL)
            goto error;
    }
    Py_DECREF(parts);
    return obj;
error:
    Py_XDECREF(parts);
    PyErr_Clear();
    return NULL;
}

/* ---- completions of each kind ------------------------------------------- */

/* Adds the line (is_cell 0) or cell magics whose names start with typed,
 * with their sigil. Returns 0 or -1. */
static int add_magics(result *r, PyObject *typed, int is_cell)
{
    PyObject *names = magics_names(is_cell);
    PyObject *sigil = names ? PyUnicode_FromString(is_cell ? "%%" : "%") : NULL;
    int rc = sigil ? 0 : -1;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(names); i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        int m = PyUnicode_Tailmatch(name, typed, 0, PY_SSIZE_T_MAX, -1);
        if (m < 0 || (m == 1 && add_prefixed(r, sigil, name, "magic") < 0))
            rc = -1;
    }
    Py_XDECREF(names);
    Py_XDECREF(sigil);
    return rc;
}

/* Magic names: %pr -> %prun. start is the index of the first %. A single %
 * that opens the cell is offered the cell magics too (%ti -> %%time), as
 * IPython offers them; elsewhere a cell magic could not run. */
static int complete_magic(const cell *c, result *r, Py_ssize_t start, int is_cell)
{
    PyObject *typed = substr(c, start + 1 + is_cell, c->cur);
    int opens_cell = 1;
    for (Py_ssize_t i = 0; i < start && opens_cell; i++)
        opens_cell = c->u[i] == ' ' || c->u[i] == '\t';
    r->start = start;
    int rc = typed ? add_magics(r, typed, is_cell) : -1;
    if (rc == 0 && !is_cell && opens_cell)
        rc = add_magics(r, typed, 1);
    Py_XDECREF(typed);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* File paths: text[start:cur] is a path typed so far; matches are that text
 * completed by the entries of its directory (directories end with /; only
 * those when dirs_only is set). */
static int complete_path(const cell *c, result *r, Py_ssize_t start, int dirs_only)
{
    PyObject *typed = substr(c, start, c->cur);
    PyObject *bytes = typed ? PyUnicode_EncodeFSDefault(typed) : NULL;
    char **names = NULL;
    size_t n = 0;
    int rc = -1;
    r->start = start;
    if (bytes == NULL)
        goto done;
    const char *t = PyBytes_AS_STRING(bytes);
    const char *slash = strrchr(t, '/');
    size_t dirlen = slash ? (size_t)(slash - t) + 1 : 0;
    const char *base = t + dirlen;
    char dir[4096];
    const char *home = getenv("HOME");
    if (t[0] == '~' && (t[1] == '/' || t[1] == '\0') && home != NULL) {
        if (slash == NULL) { /* "~": complete to "~/" */
            PyObject *m = PyUnicode_FromString("~/");
            rc = m ? add(r, m, "path") : -1;
            Py_XDECREF(m);
            goto done;
        }
        snprintf(dir, sizeof dir, "%s%.*s", home, (int)dirlen - 1, t + 1);
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)dirlen, t);
    }
    if (dirlen == 0)
        strcpy(dir, ".");
    DIR *d = opendir(dir);
    rc = 0;
    if (d == NULL)
        goto done;
    names = calloc(MAX_MATCHES, sizeof *names);
    size_t baselen = strlen(base);
    for (struct dirent *e; names && n < MAX_MATCHES && (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strncmp(e->d_name, base, baselen) != 0 || (e->d_name[0] == '.' && base[0] != '.'))
            continue;
        char full[8192];
        struct stat sb;
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        int isdir = stat(full, &sb) == 0 && S_ISDIR(sb.st_mode);
        if (dirs_only && !isdir)
            continue;
        size_t len = dirlen + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        if (names[n] == NULL)
            break;
        snprintf(names[n++], len, "%.*s%s%s", (int)dirlen, t, e->d_name, isdir ? "/" : "");
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n && rc == 0; i++) {
        PyObject *m = PyUnicode_DecodeFSDefault(names[i]);
        size_t len = strlen(names[i]);
        rc = m ? add(r, m, len && names[i][len - 1] == '/' ? "directory" : "path") : -1;
        Py_XDECREF(m);
    }
done:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    Py_XDECREF(typed);
    Py_XDECREF(bytes);
    return rc;
}

/* A type in obj's MRO named module_prefix...name (e.g. pandas DataFrame),
 * read from the type objects only. */
static int is_kind(PyObject *obj, const char *module_prefix, const char *name)
{
    PyObject *mro = Py_TYPE(obj)->tp_mro;
    for (Py_ssize_t i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        const char *dot = strrchr(t->tp_name, '.');
        if (strcmp(dot ? dot + 1 : t->tp_name, name) != 0)
            continue;
        PyObject *mod = PyObject_GetAttrString((PyObject *)t, "__module__");
        const char *m = mod && PyUnicode_Check(mod) ? PyUnicode_AsUTF8(mod) : NULL;
        int yes = m != NULL && strncmp(m, module_prefix, strlen(module_prefix)) == 0;
        Py_XDECREF(mod);
        PyErr_Clear();
        if (yes)
            return 1;
    }
    return 0;
}

/* Returns a new list of the keys an object offers for obj[...] completion:
 * a dict's own keys (read from the dict, no method is called), or what the
 * object's _ipython_key_completions_() gives (the IPython protocol, e.g.
 * pandas columns). NULL with no exception when there are none. */
static PyObject *keys_of(PyObject *obj)
{
    PyObject *keys = NULL;
    if (PyDict_Check(obj))
        return PyDict_Keys(obj);
    if (is_kind(obj, "pandas.", "DataFrame") || is_kind(obj, "numpy", "ndarray")) {
        /* a DataFrame's columns; a structured array's field names */
        int frame = is_kind(obj, "pandas.", "DataFrame");
        PyObject *a = PyObject_GetAttrString(obj, frame ? "columns" : "dtype");
        PyObject *names = a && !frame ? PyObject_GetAttrString(a, "names") : Py_XNewRef(a);
        keys = names && names != Py_None ? PySequence_List(names) : NULL;
        Py_XDECREF(a);
        Py_XDECREF(names);
        PyErr_Clear();
        return keys;
    }
    PyObject *meth = PyObject_GetAttrString((PyObject *)Py_TYPE(obj), "_ipython_key_completions_");
    if (meth != NULL) {
        PyObject *got = PyObject_CallOneArg(meth, obj);
        keys = got ? PySequence_List(got) : NULL;
        Py_XDECREF(got);
        Py_DECREF(meth);
    }
    if (keys == NULL)
        PyErr_Clear();
    return keys;
}

/* Dict keys: d["ke -> key (quote >= 0: inside a string whose content starts
 * at content), or d[ -> 'key' (quote < 0). bracket is the index of [. */
static int complete_keys(const cell *c, result *r, Py_ssize_t bracket, Py_ssize_t quote,
                         Py_ssize_t content)
{
    Py_ssize_t e = bracket;
    while (e > 0 && is_space(c->u[e - 1]))
        e--;
    Py_ssize_t s = chain_start(c, e);
    if (s == e || !(is_id(c->u[s]) && !Py_UNICODE_ISDIGIT(c->u[s])))
        return 0;
    PyObject *expr = substr(c, s, e);
    PyObject *obj = expr ? resolve(expr) : NULL;
    PyObject *keys = obj ? keys_of(obj) : NULL;
    PyObject *typed = keys && quote >= 0 ? substr(c, content, c->cur) : NULL;
    int rc = expr ? 0 : -1;
    r->start = quote >= 0 ? content : c->cur;
    Py_ssize_t n = keys ? PyList_GET_SIZE(keys) : 0;
    for (Py_ssize_t i = 0; rc == 0 && i < n && i < MAX_MATCHES; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (quote >= 0) {
            if (!PyUnicode_Check(k) || typed == NULL)
                continue;
            int m = PyUnicode_Tailmatch(k, typed, 0, PY_SSIZE_T_MAX, -1);
            Py_UCS4 q = c->u[quote];
            if (m == 1 && (PyUnicode_FindChar(k, q, 0, PY_SSIZE_T_MAX, 1) >= 0 ||
                           PyUnicode_FindChar(k, '\\', 0, PY_SSIZE_T_MAX, 1) >= 0))
                m = 0; /* would need escapes: leave it out */
            if (m < 0 || (m == 1 && add(r, k, "key") < 0))
                rc = -1;
        } else if (PyUnicode_Check(k) || PyBytes_Check(k) || PyLong_CheckExact(k)) {
            PyObject *rep = PyObject_Repr(k);
            if (rep == NULL || add(r, rep, "key") < 0)
                rc = -1;
            Py_XDECREF(rep);
        }
    }
    Py_XDECREF(expr);
    Py_XDECREF(obj);
    Py_XDECREF(keys);
    Py_XDECREF(typed);
    if (rc < 0)
        PyErr_Clear();
    return 0;
}

/* The code as jedi should see it: IPython syntax blanked out (a %magic's
 * sigil and name, a whole !shell line) so that its arguments still parse
 * as Python, with every column unchanged. Returns a new str. */
static PyObject *python_view(const cell *c)
{
    Py_UCS4 *v = PyMem_Malloc(((size_t)c->n + 1) * sizeof *v);
    if (v == NULL)
        return PyErr_NoMemory();
    memcpy(v, c->u, (size_t)c->n * sizeof *v);
    for (Py_ssize_t ls = 0; ls < c->n;) {
        Py_ssize_t p = ls;
        while (p < c->n && is_space(v[p]))
            p++;
        if (p < c->n && v[p] == '!') {
            while (p < c->n && v[p] != '\n')
                v[p++] = ' ';
        } else if (p < c->n && v[p] == '%') {
            while (p < c->n && (v[p] == '%' || is_id(v[p])))
                v[p++] = ' ';
        }
        while (p < c->n && v[p] != '\n')
            p++;
        ls = p + 1;
    }
    PyObject *s = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, v, c->n);
    PyMem_Free(v);
    return s;
}

/* jedi, imported once; NULL (no exception) when unavailable. Borrowed. */
static PyObject *get_jedi(void)
{
    if (jedi_mod == NULL) {
        const char *off = getenv("PYROMETER_NO_JEDI");
        jedi_mod = off && *off ? NULL : PyImport_ImportModule("jedi");
        if (jedi_mod == NULL) {
            PyErr_Clear();
            jedi_mod = Py_NewRef(Py_None);
        } else {
            /* Exact case, as IPython; and no descriptor or __getitem__ is
             * run while completing (jedi >= 0.19 reads this setting; older
             * ones read the attribute set in complete_jedi). */
            PyObject *settings = PyObject_GetAttrString(jedi_mod, "settings");
            int bad = settings == NULL;
            bad = bad ||
                  PyObject_SetAttrString(settings, "case_insensitive_completion", Py_False) < 0;
            bad = bad || PyObject_SetAttrString(settings, "allow_unsafe_interpreter_executions",
                                                Py_False) < 0;
            if (bad)
                log_exception("jedi settings");
            Py_XDECREF(settings);
        }
    }
    return jedi_mod == Py_None ? NULL : jedi_mod;
}

/* Names, attributes, keywords, imports and arguments through jedi. Returns
 * 0, or -1 with an exception set (the caller falls back). */
static int complete_jedi(PyObject *jedi, const cell *c, result *r)
{
    PyObject *code = NULL, *script = NULL, *comps = NULL, *names = NULL, *lens = NULL;
    int rc = -1;
    Py_ssize_t line = 1, ls = 0;
    for (Py_ssize_t i = 0; i < c->cur; i++)
        if (c->u[i] == '\n') {
            line++;
            ls = i + 1;
        }
    code = python_view(c);
    if (code == NULL)
        goto error;
    script = PyObject_CallMethod(jedi, "Interpreter", "O[O]", code, interp_user_ns());
    if (script == NULL)
        goto error;
    PyObject *state = PyObject_GetAttrString(script, "_inference_state");
    if (state == NULL || PyObject_SetAttrString(state, "allow_descriptor_getattr", Py_False) < 0)
        PyErr_Clear();
    Py_XDECREF(state);
    comps = PyObject_CallMethod(script, "complete", "nn", line, c->cur - ls);
    if (comps == NULL || !PyList_Check(comps))
        goto error;

    /* Each completion replaces its own prefix length before the cursor;
     * matches share one start: that of the dotted name being typed. */
    Py_ssize_t n = PyList_GET_SIZE(comps), start = chain_start(c, c->cur);
    Py_ssize_t typed = id_start(c, c->cur);
    int show_private = typed < c->cur && c->u[typed] == '_';
    names = PyList_New(n);
    lens = PyList_New(n);
    if (names == NULL || lens == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *comp = PyList_GET_ITEM(comps, i);
        PyObject *name = PyObject_GetAttrString(comp, "name");
        PyObject *len =
            name ? PyObject_CallMethod(comp, "get_completion_prefix_length", NULL) : NULL;
        if (len == NULL) {
            Py_XDECREF(name);
            goto error;
        }
        PyList_SET_ITEM(names, i, name);
        PyList_SET_ITEM(lens, i, len);
        Py_ssize_t k = PyLong_AsSsize_t(len);
        if (k >= 0 && k <= c->cur && c->cur - k < start)
            start = c->cur - k;
    }
    r->start = start;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        Py_ssize_t k = PyLong_AsSsize_t(PyList_GET_ITEM(lens, i));
        if (k < 0 || k > c->cur - start || !PyUnicode_Check(name))
            continue;
        if (PyUnicode_GET_LENGTH(name) == 0 ||
            (!show_private && PyUnicode_READ_CHAR(name, 0) == '_'))
            continue;
        PyObject *type = PyObject_GetAttrString(PyList_GET_ITEM(comps, i), "type");
        const char *t = type && PyUnicode_Check(type) ? PyUnicode_AsUTF8(type) : NULL;
        PyObject *prefix = substr(c, start, c->cur - k);
        int bad = prefix == NULL || add_prefixed(r, prefix, name, t ? t : "") < 0;
        Py_XDECREF(prefix);
        Py_XDECREF(type);
        PyErr_Clear();
        if (bad)
            goto error;
    }
    rc = 0;
error:
    Py_XDECREF(code);
    Py_XDECREF(script);
    Py_XDECREF(comps);
    Py_XDECREF(names);
    Py_XDECREF(lens);
    return rc;
}

/* When jedi finds nothing for a.b.pre (a.b is reached through __getattr__,
 * say): the attributes of a.b, reached by getattr along the dotted name
 * only, whose names start with pre. */
static int complete_attrs(const cell *c, result *r)
{
    Py_ssize_t start = chain_start(c, c->cur), dot = c->cur;
    while (dot > start && c->u[dot - 1] != '.')
        dot--;
    if (dot <= start || !is_id(c->u[start]) || Py_UNICODE_ISDIGIT(c->u[start]))
        return 0;
    int show_private = dot < c->cur && c->u[dot] == '_';
    PyObject *base = substr(c, start, dot - 1);
    PyObject *prefix = substr(c, start, dot);
    PyObject *typed = substr(c, dot, c->cur);
    PyObject *obj = base && prefix && typed ? resolve(base) : NULL;
    PyObject *names = obj ? PyObject_Dir(obj) : NULL;
    int rc = base && prefix && typed ? 0 : -1;
    r->start = start;
    for (Py_ssize_t i = 0; rc == 0 && names && PyList_Check(names) && i < PyList_GET_SIZE(names);
         i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        if (!PyUnicode_Check(name) || PyUnicode_GET_LENGTH(name) == 0 ||
            (!show_private && PyUnicode_READ_CHAR(name, 0) == '_'))
            continue;
        int m = PyUnicode_Tailmatch(name, typed, 0, PY_SSIZE_T_MAX, -1);
        if (m < 0 || (m == 1 && add_prefixed(r, prefix, name, "") < 0))
            rc = -1;
    }
    if (names == NULL)
        PyErr_Clear();
    Py_XDECREF(base);
    Py_XDECREF(prefix);
    Py_XDECREF(typed);
    Py_XDECREF(obj);
    Py_XDECREF(names);
    return rc;
}

/* Strips what rlcompleter appends ("zip(", "f()", "import ", "try:"). */
static PyObject *bare(PyObject *m)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(m);
    if (n > 2 && PyUnicode_READ_CHAR(m, n - 1) == ')' && PyUnicode_READ_CHAR(m, n - 2) == '(')
        n--;
    while (n > 0) {
        Py_UCS4 ch = PyUnicode_READ_CHAR(m, n - 1);
        if (ch != '(' && ch != ' ' && ch != ':')
            break;
        n--;
    }
    return PyUnicode_Substring(m, 0, n);
}

/* Sorts the matches (with their types) by text. Returns 0 or -1. */
static int sort_result(result *r)
{
    Py_ssize_t n = PyList_GET_SIZE(r->matches);
    PyObject *pairs = PyList_New(n);
    if (pairs == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyTuple_Pack(2, PyList_GET_ITEM(r->matches, i), PyList_GET_ITEM(r->types, i));
        if (p == NULL) {
            Py_DECREF(pairs);
            return -1;
        }
        PyList_SET_ITEM(pairs, i, p);
    }
    if (PyList_Sort(pairs) < 0) {
        Py_DECREF(pairs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(pairs, i);
        PyList_SetItem(r->matches, i, Py_NewRef(PyTuple_GET_ITEM(p, 0)));
        PyList_SetItem(r->types, i, Py_NewRef(PyTuple_GET_ITEM(p, 1)));
    }
    Py_DECREF(pairs);
    return 0;
}

/* Module names for `import a.b` / `from a.b`, without importing anything:
 * top-level names from the import path, submodules of modules already
 * imported (or of a top-level package found on the path). */
static int complete_module(const cell *c, result *r)
{
    Py_ssize_t start = chain_start(c, c->cur), dot = c->cur;
    while (dot > start && c->u[dot - 1] != '.')
        dot--;
    PyObject *parent = dot > start ? substr(c, start, dot - 1) : NULL;
    PyObject *prefix = dot > start ? substr(c, start, dot) : NULL;
    PyObject *typed = substr(c, dot, c->cur);
    PyObject *pkgutil = PyImport_ImportModule("pkgutil"), *mods = NULL, *path = Py_None;
    PyObject *found = NULL;
    int rc = -1;
    r->start = start;
    if (typed == NULL || pkgutil == NULL || (dot > start && (parent == NULL || prefix == NULL)))
        goto done;
    if (parent != NULL) {
        PyObject *mod = PyDict_GetItemWithError(PySys_GetObject("modules"), parent);
        if (mod != NULL) {
            /* names in an imported module that are modules themselves */
            PyObject *d = PyModule_Check(mod) ? PyModule_GetDict(mod) : NULL;
            PyObject *k, *v;
            Py_ssize_t pos = 0;
            while (d != NULL && PyDict_Next(d, &pos, &k, &v))
                if (PyModule_Check(v) && PyUnicode_Check(k) &&
                    PyUnicode_Tailmatch(k, typed, 0, PY_SSIZE_T_MAX, -1) == 1 &&
                    add_prefixed(r, prefix, k, "module") < 0)
                    goto done;
            path = PyObject_GetAttrString(mod, "__path__");
        } else if (!PyErr_Occurred() && PyUnicode_FindChar(parent, '.', 0, PY_SSIZE_T_MAX, 1) < 0) {
            PyObject *util = PyImport_ImportModule("importlib.util");
            PyObject *spec = util ? PyObject_CallMethod(util, "find_spec", "(O)", parent) : NULL;
            path = spec && spec != Py_None
                       ? PyObject_GetAttrString(spec, "submodule_search_locations")
                       : NULL;
            Py_XDECREF(util);
            Py_XDECREF(spec);
        } else {
            path = NULL;
        }
        if (path == NULL || path == Py_None) {
            PyErr_Clear();
            Py_XDECREF(path);
            rc = 0;
            goto done;
        }
    } else {
        PyObject *builtin = PySys_GetObject("builtin_module_names");
        for (Py_ssize_t i = 0; builtin && i < PyTuple_GET_SIZE(builtin); i++) {
            PyObject *k = PyTuple_GET_ITEM(builtin, i);
            if (PyUnicode_Tailmatch(k, typed, 0, PY_SSIZE_T_MAX, -1) == 1 &&
                add(r, k, "module") < 0)
                goto done;
        }
        Py_INCREF(path);
    }
    mods = PyObject_CallMethod(pkgutil, "iter_modules", "(O)", path);
    Py_DECREF(path);
    found = mods ? PySequence_List(mods) : NULL;
    if (found == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(found); i++) {
        PyObject *k = PyObject_GetAttrString(PyList_GET_ITEM(found, i), "name");
        int bad = k == NULL || (PyUnicode_Tailmatch(k, typed, 0, PY_SSIZE_T_MAX, -1) == 1 &&
                                add_prefixed(r, prefix, k, "module") < 0);
        Py_XDECREF(k);
        if (bad)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(parent);
    Py_XDECREF(prefix);
    Py_XDECREF(typed);
    Py_XDECREF(pkgutil);
    Py_XDECREF(mods);
    Py_XDECREF(found);
    return rc;
}

/* The completion type of a global name (a dict lookup, nothing runs):
 * keyword, module, class, function, instance, or "" when unknown. */
static const char *global_type(PyObject *name)
{
    PyObject *obj = global_lookup(name);
    if (obj == NULL) {
        PyObject *kw = PyImport_ImportModule("keyword");
        PyObject *is = kw ? PyObject_CallMethod(kw, "iskeyword", "(O)", name) : NULL;
        int yes = is == Py_True;
        Py_XDECREF(kw);
        Py_XDECREF(is);
        PyErr_Clear();
        return yes ? "keyword" : "";
    }
    return PyModule_Check(obj)     ? "module"
           : PyType_Check(obj)     ? "class"
           : PyCallable_Check(obj) ? "function"
                                   : "instance";
}

/* Without jedi: modules in import lines, else rlcompleter on the dotted
 * name (it evaluates nothing but a dotted name: getattr only). */
static int complete_plain(const cell *c, result *r)
{
    Py_ssize_t ls = c->cur, p;
    while (ls > 0 && c->u[ls - 1] != '\n')
        ls--;
    for (p = ls; p < c->cur && is_space(c->u[p]);)
        p++;
    PyObject *line = substr(c, p, c->cur);
    if (line == NULL)
        return -1;
    const char *l = PyUnicode_AsUTF8(line);
    int is_import = l && (strncmp(l, "import ", 7) == 0 ||
                          (strncmp(l, "from ", 5) == 0 && strstr(l, " import ") == NULL));
    if (l && strncmp(l, "from ", 5) == 0 && strstr(l, " import ") != NULL) {
        /* from mod import na: names in mod, when it is already imported */
        const char *m = l + 5, *e = strchr(m, ' ');
        PyObject *name = PyUnicode_FromStringAndSize(m, e - m);
        PyObject *mod = name ? PyDict_GetItemWithError(PySys_GetObject("modules"), name) : NULL;
        Py_ssize_t s = id_start(c, c->cur);
        PyObject *typed = substr(c, s, c->cur);
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        r->start = s;
        PyObject *d = mod && PyModule_Check(mod) ? PyModule_GetDict(mod) : NULL;
        while (typed && d && PyDict_Next(d, &pos, &k, &v))
            if (PyUnicode_Check(k) && PyUnicode_Tailmatch(k, typed, 0, PY_SSIZE_T_MAX, -1) == 1 &&
                PyUnicode_GET_LENGTH(k) > 0 &&
                (PyUnicode_READ_CHAR(k, 0) != '_' || (s < c->cur && c->u[s] == '_')))
                add(r, k, "");
        Py_XDECREF(name);
        Py_XDECREF(typed);
        Py_DECREF(line);
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(line);
    if (is_import)
        return complete_module(c, r);

    Py_ssize_t start = chain_start(c, c->cur);
    if (start == c->cur || !is_id(c->u[start]) || Py_UNICODE_ISDIGIT(c->u[start]))
        return 0;
    Py_ssize_t typed = id_start(c, c->cur);
    int show_private = typed < c->cur && c->u[typed] == '_';
    PyObject *text = substr(c, start, c->cur);
    PyObject *rl = text ? PyImport_ImportModule("rlcompleter") : NULL;
    PyObject *comp = rl ? PyObject_CallMethod(rl, "Completer", "(O)", interp_user_ns()) : NULL;
    int rc = comp ? 0 : -1;
    r->start = start;
    for (int state = 0; rc == 0 && state < MAX_MATCHES; state++) {
        PyObject *m = PyObject_CallMethod(comp, "complete", "Oi", text, state);
        if (m == NULL || m == Py_None) {
            rc = m ? 0 : -1;
            Py_XDECREF(m);
            break;
        }
        PyObject *b = bare(m);
        Py_DECREF(m);
        if (b == NULL) {
            rc = -1;
            break;
        }
        Py_ssize_t last = PyUnicode_FindChar(b, '.', 0, PY_SSIZE_T_MAX, -1) + 1;
        if (last < PyUnicode_GET_LENGTH(b) && (show_private || PyUnicode_READ_CHAR(b, last) != '_'))
            rc = add(r, b, last == 0 ? global_type(b) : "");
        Py_DECREF(b);
    }
    Py_XDECREF(text);
    Py_XDECREF(rl);
    Py_XDECREF(comp);
    return rc;
}

/* Finds where a magic's % (or a shell line's !) stands on the cursor's
 * line: at its start, or after `name =`. Returns its index, or -1. */
static Py_ssize_t sigil_at(const cell *c)
{
    Py_ssize_t ls = c->cur, p;
    while (ls > 0 && c->u[ls - 1] != '\n')
        ls--;
    for (p = ls; p < c->cur && is_space(c->u[p]);)
        p++;
    if (p < c->cur && (c->u[p] == '%' || c->u[p] == '!'))
        return p;
    while (p < c->cur && (is_id(c->u[p]) || is_space(c->u[p]) || c->u[p] == ','))
        p++;
    if (p == c->cur || c->u[p] != '=' || (p + 1 < c->n && c->u[p + 1] == '='))
        return -1;
    for (p++; p < c->cur && is_space(c->u[p]);)
        p++;
    return p < c->cur && (c->u[p] == '%' || c->u[p] == '!') ? p : -1;
}

/* Start of the whitespace-separated word that ends at the cursor. */
static Py_ssize_t word_start(const cell *c, Py_ssize_t from)
{
    Py_ssize_t s = c->cur;
    while (s > from && !is_space(c->u[s - 1]))
        s--;
    return s;
}

/* 1 when the cursor is inside a {replacement field} of an f-string whose
 * text starts at content. */
static int in_braces(const cell *c, Py_ssize_t content)
{
    int open = 0;
    for (Py_ssize_t i = content; i < c->cur; i++) {
        if (c->u[i] == '{' && i + 1 < c->cur && c->u[i + 1] == '{' && !open)
            i++; /* {{ is a literal brace */
        else if (c->u[i] == '{')
            open++;
        else if (c->u[i] == '}' && open > 0)
            open--;
    }
    return open > 0;
}

static int complete(const cell *c, result *r)
{
    Py_ssize_t quote = -1, content = -1;
    int where = scan(c, &quote, &content);
    Py_ssize_t sigil = sigil_at(c);

    if (where == IN_COMMENT)
        return 0;
    if (sigil >= 0 && c->u[sigil] == '!')
        return complete_path(c, r, word_start(c, sigil + 1), 0);
    if (sigil >= 0) {
        int is_cell = sigil + 1 < c->n && c->u[sigil + 1] == '%';
        Py_ssize_t name = sigil + 1 + is_cell, e = name;
        while (e < c->n && is_id(c->u[e]))
            e++;
        if (c->cur <= e)
            return complete_magic(c, r, sigil, is_cell) < 0 ? -1 : sort_result(r);
        if (e - name == 2 && c->u[name] == 'c' && c->u[name + 1] == 'd')
            return complete_path(c, r, word_start(c, e), 1);
    }
    if (where == IN_STRING) {
        /* d["ke -> key; f"{na -> Python; otherwise a file path. */
        Py_ssize_t b = quote;
        int fstring = 0;
        while (b > 0 && b > quote - 2 && c->u[b - 1] < 128 && c->u[b - 1] != 0 &&
               strchr("rRbBuUfF", (int)c->u[b - 1])) {
            fstring |= c->u[b - 1] == 'f' || c->u[b - 1] == 'F';
            b--;
        }
        if (fstring && in_braces(c, content))
            goto python;
        while (b > 0 && is_space(c->u[b - 1]))
            b--;
        if (b > 0 && c->u[b - 1] == '[') {
            if (complete_keys(c, r, b - 1, quote, content) < 0)
                return -1;
            if (PyList_GET_SIZE(r->matches) > 0)
                return 0;
        }
        for (Py_ssize_t i = content; i < c->cur; i++)
            if (c->u[i] == '\n')
                return 0;
        return complete_path(c, r, content, 0);
    }
    if (c->cur > 0 && c->u[c->cur - 1] == '[')
        return complete_keys(c, r, c->cur - 1, -1, -1);
python:;
    PyObject *jedi = get_jedi();
    if (jedi != NULL) {
        if (complete_jedi(jedi, c, r) == 0)
            return PyList_GET_SIZE(r->matches) > 0 ? 0 : complete_attrs(c, r);
        log_exception("completion (jedi)");
        PyList_SetSlice(r->matches, 0, PY_SSIZE_T_MAX, NULL);
        PyList_SetSlice(r->types, 0, PY_SSIZE_T_MAX, NULL);
        PySet_Clear(r->seen);
    }
    return complete_plain(c, r) < 0 ? -1 : sort_result(r);
}

/* Warnings (a library's DeprecationWarning on attribute access, say) are
 * silenced while completing or inspecting: they would land in the last
 * cell's output. Returns the entered warnings.catch_warnings() (new), or
 * NULL (no exception). */
static PyObject *quiet_begin(void)
{
    PyObject *warnings = PyImport_ImportModule("warnings");
    PyObject *cm = warnings ? PyObject_CallMethod(warnings, "catch_warnings", NULL) : NULL;
    PyObject *r = cm ? PyObject_CallMethod(cm, "__enter__", NULL) : NULL;
    if (r == NULL) {
        Py_CLEAR(cm); /* not entered: nothing to undo */
    } else {
        Py_SETREF(r, PyObject_CallMethod(warnings, "simplefilter", "s", "ignore"));
        Py_XDECREF(r);
    }
    Py_XDECREF(warnings);
    PyErr_Clear();
    return cm;
}

static void quiet_end(PyObject *cm)
{
    PyObject *r = cm ? PyObject_CallMethod(cm, "__exit__", "OOO", Py_None, Py_None, Py_None) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(cm);
    PyErr_Clear();
}

json_t *introspect_complete(const char *code, long cursor_pos)
{
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *st, *sv, *stb; /* an exception pending on entry is kept */
    PyErr_Fetch(&st, &sv, &stb);
    PyObject *quiet = quiet_begin();
    cell c;
    result r = {0};
    json_t *reply = NULL;
    if (cell_init(&c, code, cursor_pos) < 0 || result_init(&r, c.cur, c.cur) < 0) {
        log_exception("completion");
    } else {
        r.start = r.end = c.cur;
        if (complete(&c, &r) < 0) {
            log_exception("completion");
            result_clear(&r);
            result_init(&r, c.cur, c.cur);
        }
    }
    PyErr_Clear();
    reply = reply_of(&r);
    result_clear(&r);
    cell_clear(&c);
    quiet_end(quiet);
    PyErr_Restore(st, sv, stb);
    PyGILState_Release(g);
    return reply;
}

/* ---- inspection ------------------------------------------------------------ */

/* The dotted name to inspect at the cursor: the one the cursor is in or
 * just after, else the function of the call the cursor is in. Returns a new
 * str, or NULL (no exception) when there is none. */
static PyObject *name_at_cursor(const cell *c)
{
    Py_ssize_t e = c->cur;
    while (e < c->n && is_id(c->u[e]))
        e++;
    if (!(e > 0 && is_id(c->u[e - 1]))) {
        /* Not on a name: the call we are in, f(a, |. */
        int depth = 0;
        for (e = c->cur; e > 0; e--) {
            Py_UCS4 ch = c->u[e - 1];
            if (ch == ')' || ch == ']' || ch == '}')
                depth++;
            else if ((ch == '[' || ch == '{') && depth > 0)
                depth--;
            else if (ch == '(' && depth-- == 0)
                break;
        }
        if (e == 0)
            return NULL;
        for (e--; e > 0 && is_space(c->u[e - 1]);)
            e--;
    }
    Py_ssize_t s = chain_start(c, e);
    if (s == e || !is_id(c->u[s]) || Py_UNICODE_ISDIGIT(c->u[s]) ||
        (s > 0 && (c->u[s - 1] == '.' || c->u[s - 1] == ')' || c->u[s - 1] == ']')))
        return NULL;
    /* %name and %%name: the magic, with its sigil */
    if (s > 0 && c->u[s - 1] == '%')
        s -= (s > 1 && c->u[s - 2] == '%') ? 2 : 1;
    return substr(c, s, e);
}

/* Appends "Label:  text" (text on its own lines when it has several). */
typedef struct {
    const char *label[8];
    PyObject *text[8]; /* owned */
    int n;
} fields;

static void field(fields *f, const char *label, PyObject *text)
{
    if (text == NULL || !PyUnicode_Check(text) || f->n == 8) {
        Py_XDECREF(text);
        PyErr_Clear();
        return;
    }
    f->label[f->n] = label;
    f->text[f->n++] = text;
}

/* Calls inspect.<fn>(obj); a new str, or NULL with no exception. */
static PyObject *inspect_call(PyObject *inspect, const char *fn, PyObject *obj)
{
    PyObject *r = PyObject_CallMethod(inspect, fn, "(O)", obj);
    if (r != NULL && !PyUnicode_Check(r))
        Py_SETREF(r, r == Py_None ? NULL : PyObject_Str(r));
    if (r == NULL)
        PyErr_Clear();
    return r;
}

/* Returns "name(sig)" for a callable, with name as typed (os.path.join),
 * or NULL (no exception). */
static PyObject *signature_of(PyObject *inspect, PyObject *obj, PyObject *name)
{
    PyObject *sig = inspect_call(inspect, "signature", obj);
    if (sig == NULL)
        return NULL;
    PyObject *r = PyUnicode_Concat(name, sig);
    Py_DECREF(sig);
    if (r == NULL)
        PyErr_Clear();
    return r;
}

/* The length of a built-in container (no user __len__ runs), or -1. */
static Py_ssize_t builtin_len(PyObject *obj)
{
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj) || PyDict_CheckExact(obj) ||
        PyUnicode_CheckExact(obj) || PyBytes_CheckExact(obj) || PyAnySet_CheckExact(obj) ||
        PyByteArray_CheckExact(obj))
        return PyObject_Length(obj);
    return -1;
}

/* The source of a class defined in a cell (inspect.getsource cannot find
 * it: __main__ has no file): the `class Name` block of the latest cell in
 * linecache that defines it at top level. A new str, or NULL (no
 * exception); *cell_name gets a new reference to that cell's name. */
static PyObject *cell_class_source(PyObject *inspect, PyObject *cls, PyObject **cell_name)
{
    PyObject *lc = PyImport_ImportModule("linecache");
    PyObject *cache = lc ? PyObject_GetAttrString(lc, "cache") : NULL;
    PyObject *mod = PyObject_GetAttrString(cls, "__module__");
    PyObject *qual = PyObject_GetAttrString(cls, "__qualname__");
    PyObject *lines = NULL, *src = NULL, *key, *entry;
    const char *name = qual ? PyUnicode_AsUTF8(qual) : NULL;
    const char *m = mod && PyUnicode_Check(mod) ? PyUnicode_AsUTF8(mod) : NULL;
    long best = -1, best_line = 0;
    Py_ssize_t pos = 0;
    size_t len = name ? strlen(name) : 0;
    if (cache == NULL || name == NULL || m == NULL || strcmp(m, "__main__") != 0 ||
        !PyDict_Check(cache) || strchr(name, '.') != NULL)
        goto done;
    while (PyDict_Next(cache, &pos, &key, &entry)) {
        const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        long num;
        int end = 0;
        if (k == NULL || sscanf(k, "<cell-%ld>%n", &num, &end) != 1 || k[end] != '\0' ||
            num <= best || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 3 ||
            !PyList_Check(PyTuple_GET_ITEM(entry, 2)))
            continue;
        PyObject *ls = PyTuple_GET_ITEM(entry, 2);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ls); i++) {
            const char *l = PyUnicode_Check(PyList_GET_ITEM(ls, i))
                                ? PyUnicode_AsUTF8(PyList_GET_ITEM(ls, i))
                                : NULL;
            if (l && strncmp(l, "class ", 6) == 0 && strncmp(l + 6, name, len) == 0 &&
                strchr("(: ", l[6 + len]) && l[6 + len]) {
                Py_XSETREF(lines, Py_NewRef(ls));
                Py_XSETREF(*cell_name, Py_NewRef(key));
                best = num;
                best_line = (long)i;
                break;
            }
        }
    }
    if (lines != NULL) {
        PyObject *tail = PyList_GetSlice(lines, best_line, PY_SSIZE_T_MAX);
        PyObject *block = tail ? PyObject_CallMethod(inspect, "getblock", "(O)", tail) : NULL;
        PyObject *empty = block ? PyUnicode_FromString("") : NULL;
        src = empty ? PyUnicode_Join(empty, block) : NULL;
        Py_XDECREF(tail);
        Py_XDECREF(block);
        Py_XDECREF(empty);
    }
done:
    PyErr_Clear();
    Py_XDECREF(lc);
    Py_XDECREF(cache);
    Py_XDECREF(mod);
    Py_XDECREF(qual);
    Py_XDECREF(lines);
    return src;
}

/* Builds the help text of obj (called name). Returns a new str or NULL with
 * an exception set. */
static PyObject *info_text(PyObject *obj, PyObject *name, int detail_level, int colour)
{
    fields f = {0};
    PyObject *out = NULL, *inspect = PyImport_ImportModule("inspect");
    if (inspect == NULL)
        return NULL;
    int is_class = PyType_Check(obj), is_module = PyModule_Check(obj);
    int is_callable = PyCallable_Check(obj) && !is_class;
    PyObject *type = PyType_GetName(Py_TYPE(obj));
    PyObject *doc = inspect_call(inspect, "getdoc", obj);
    if (doc == NULL)
        doc = PyUnicode_FromString("<no docstring>");
    PyObject *file = inspect_call(inspect, "getsourcefile", obj);
    if (file == NULL)
        file = inspect_call(inspect, "getfile", obj);
    PyObject *source = detail_level > 0 ? inspect_call(inspect, "getsource", obj) : NULL;
    if (is_class && file == NULL) {
        PyObject *cell_source = cell_class_source(inspect, obj, &file);
        if (source == NULL && detail_level > 0)
            source = cell_source;
        else
            Py_XDECREF(cell_source);
    }
    if (source != NULL) {
        /* without the final newline, like the other fields */
        Py_ssize_t n = PyUnicode_GET_LENGTH(source);
        while (n > 0 && PyUnicode_READ_CHAR(source, n - 1) == '\n')
            n--;
        Py_SETREF(source, PyUnicode_Substring(source, 0, n));
    }

    if (is_callable || is_class) {
        field(&f, is_class ? "Init signature" : "Signature", signature_of(inspect, obj, name));
        field(&f, "Docstring", Py_XNewRef(doc));
        field(&f, "Source", Py_XNewRef(source));
        field(&f, "File", Py_XNewRef(file));
        field(&f, "Type", Py_XNewRef(type));
    } else {
        field(&f, "Type", Py_XNewRef(type));
        if (!is_module) {
            Py_ssize_t len = builtin_len(obj);
            PyObject *s = NULL;
            if (len > 1000) { /* a huge container: the start of its repr */
                PyObject *reprlib = PyImport_ImportModule("reprlib");
                s = reprlib ? PyObject_CallMethod(reprlib, "repr", "(O)", obj) : NULL;
                Py_XDECREF(reprlib);
            } else {
                s = PyObject_Str(obj);
            }
            if (s != NULL && PyUnicode_GET_LENGTH(s) > MAX_STRING_FORM) {
                PyObject *cut = PyUnicode_Substring(s, 0, MAX_STRING_FORM - 3);
                Py_SETREF(s, cut ? PyUnicode_FromFormat("%U...", cut) : NULL);
                Py_XDECREF(cut);
            }
            field(&f, "String form", s);
            if (len >= 0)
                field(&f, "Length", PyUnicode_FromFormat("%zd", len));
        }
        field(&f, "File", Py_XNewRef(file));
        field(&f, "Docstring", Py_XNewRef(doc));
        field(&f, "Source", Py_XNewRef(source));
    }
    PyErr_Clear();

    size_t width = 0;
    for (int i = 0; i < f.n; i++)
        if (strlen(f.label[i]) + 2 > width)
            width = strlen(f.label[i]) + 2;
    PyObject *lines = PyList_New(0);
    for (int i = 0; lines && i < f.n; i++) {
        int multi = PyUnicode_FindChar(f.text[i], '\n', 0, PY_SSIZE_T_MAX, 1) >= 0;
        /* The label in red, as IPython 9 writes it (the padding after the
         * colour ends). */
        char label[64], padded[96];
        snprintf(label, sizeof label, colour ? "\x1b[31m%s:\x1b[39m" : "%s:", f.label[i]);
        snprintf(padded, sizeof padded, "%s%*s", label, (int)(width - strlen(f.label[i]) - 1), "");
        PyObject *l =
            PyUnicode_FromFormat(multi ? "%s\n%U" : "%s%U", multi ? label : padded, f.text[i]);
        if (l == NULL || PyList_Append(lines, l) < 0)
            Py_CLEAR(lines);
        Py_XDECREF(l);
    }
    if (lines != NULL) {
        PyObject *nl = PyUnicode_FromString("\n");
        out = nl ? PyUnicode_Join(nl, lines) : NULL;
        Py_XDECREF(nl);
    }
    Py_XDECREF(lines);
    for (int i = 0; i < f.n; i++)
        Py_DECREF(f.text[i]);
    Py_XDECREF(type);
    Py_XDECREF(doc);
    Py_XDECREF(file);
    Py_XDECREF(source);
    Py_DECREF(inspect);
    return out;
}

/* The help of the magic "%name" or "%%name" (a new str), or NULL with no
 * exception set when there is no such magic. */
static PyObject *magic_text(PyObject *sigil_name)
{
    const char *n = PyUnicode_AsUTF8(sigil_name);
    if (n == NULL) {
        PyErr_Clear();
        return NULL;
    }
    int is_cell = n[1] == '%';
    PyObject *doc = magics_help(n + 1 + is_cell, is_cell);
    if (doc == NULL)
        PyErr_Clear();
    return doc;
}

json_t *introspect_inspect(const char *code, long cursor_pos, int detail_level)
{
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *st, *sv, *stb; /* an exception pending on entry is kept */
    PyErr_Fetch(&st, &sv, &stb);
    PyObject *quiet = quiet_begin();
    PyObject *name = NULL, *obj = NULL, *text = NULL;
    cell c;
    json_t *reply = NULL;
    if (cell_init(&c, code, cursor_pos) == 0) {
        name = name_at_cursor(&c);
        if (name != NULL && PyUnicode_READ_CHAR(name, 0) == '%') {
            text = magic_text(name);
        } else {
            obj = name ? resolve(name) : NULL;
            text = obj ? info_text(obj, name, detail_level, errors_colour_on()) : NULL;
        }
        if (obj != NULL && text == NULL)
            log_exception("inspection");
        cell_clear(&c);
    }
    PyErr_Clear();
    const char *t = text ? PyUnicode_AsUTF8(text) : NULL;
    if (t != NULL)
        reply = json_pack("{s:s, s:b, s:{s:s}, s:{}}", "status", "ok", "found", 1, "data",
                          "text/plain", t, "metadata");
    else
        reply = json_pack("{s:s, s:b, s:{}, s:{}}", "status", "ok", "found", 0, "data", "metadata");
    PyErr_Clear();
    Py_XDECREF(name);
    Py_XDECREF(obj);
    Py_XDECREF(text);
    quiet_end(quiet);
    PyErr_Restore(st, sv, stb);
    PyGILState_Release(g);
    return reply;
}

PyObject *introspect_object(const char *name)
{
    PyObject *n = PyUnicode_FromString(name);
    PyObject *obj = n ? resolve(n) : NULL;
    Py_XDECREF(n);
    PyErr_Clear();
    return obj;
}

char *introspect_text(const char *name, int detail_level, int colour)
{
    PyObject *n = PyUnicode_FromString(name);
    if (n == NULL)
        return NULL;
    PyObject *stripped = PyObject_CallMethod(n, "strip", NULL);
    Py_DECREF(n);
    if (stripped == NULL)
        return NULL;
    if (PyUnicode_GET_LENGTH(stripped) > 1 && PyUnicode_READ_CHAR(stripped, 0) == '%') {
        PyObject *doc = magic_text(stripped);
        Py_DECREF(stripped);
        const char *t = doc ? PyUnicode_AsUTF8(doc) : NULL;
        char *r = t ? strdup(t) : NULL;
        Py_XDECREF(doc);
        PyErr_Clear();
        return r;
    }
    PyObject *obj = resolve(stripped);
    if (obj == NULL) {
        Py_DECREF(stripped);
        return NULL;
    }
    PyObject *text = info_text(obj, stripped, detail_level, colour);
    Py_DECREF(obj);
    Py_DECREF(stripped);
    if (text == NULL)
        return NULL;
    const char *t = PyUnicode_AsUTF8(text);
    char *r = t ? strdup(t) : NULL;
    if (t != NULL && r == NULL)
        PyErr_NoMemory();
    Py_DECREF(text);
    return r;
}

/* obj? and obj??: the same text as inspect_request, as a `page` payload. */
static PyObject *k_inspect(PyObject *self, PyObject *args)
{
    const char *name;
    int level;
    if (!PyArg_ParseTuple(args, "si:inspect", &name, &level))
        return NULL;
    char *text = introspect_text(name, level, errors_colour_on());
    if (text == NULL) {
        if (PyErr_Occurred())
            return NULL;
        PyObject *msg = PyUnicode_FromFormat("Object `%s` not found.\n", name);
        if (msg == NULL)
            return NULL;
        PySys_WriteStdout("%s", PyUnicode_AsUTF8(msg));
        Py_DECREF(msg);
        Py_RETURN_NONE;
    }
    session_add_payload(
        json_pack("{s:s, s:{s:s}, s:i}", "source", "page", "data", "text/plain", text, "start", 0));
    free(text);
    Py_RETURN_NONE;
}

static PyMethodDef inspect_def = {"inspect", k_inspect, METH_VARARGS,
                                  "inspect(name, level): obj? and obj??."};

int introspect_install(PyObject *kmod)
{
    PyObject *f = PyCFunction_New(&inspect_def, NULL);
    if (f == NULL || PyModule_AddObject(kmod, "inspect", f) < 0) {
        Py_XDECREF(f);
        return -1;
    }
    return 0;
}
