/* pretty.c - a value's text/plain laid out as IPython's pretty printer lays
 * it out (see pretty.h).
 *
 * The layout engine is the streaming one of Oppen's algorithm, as IPython
 * has it: text and breakable spaces go to a buffer; each breakable belongs
 * to the innermost open group; when the current line plus the buffer no
 * longer fits the width, the outermost group that still has breakables in
 * the buffer is broken (all of its breakables become newlines at their
 * indentation) and the buffer is written up to the next breakable. The
 * printers for each kind of value (which groups, which texts) follow
 * IPython's choices, so the output is the same text, character for
 * character; tests/protocol/test_pretty.py compares the two on thousands of
 * generated values. */
#include "pretty.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WIDTH 79
#define MAX_SEQ   1000

enum { PR_OK = 0, PR_ERROR = -1, PR_FOREIGN = 1 /* needs IPython's printer */ };

typedef struct {
    int depth;
    int want_break;
    Py_ssize_t pending; /* its breakables still in the buffer */
} Group;

typedef struct {
    PyObject *text; /* a str for text; NULL for a breakable */
    Py_ssize_t width;
    Py_ssize_t indent; /* a breakable's indentation when made */
    Group *group;      /* a breakable's group */
} Item;

typedef struct {
    Group **items;
    size_t n, cap;
} Level;

typedef struct {
    PyObject *out; /* list of str */
    Py_ssize_t out_width, buf_width, indentation;
    Item *buf;
    size_t head, len, cap; /* buf[head .. head+len) */
    Group **stack;
    size_t nstack, capstack;
    Level *levels;
    size_t nlevels;
    Group **pool; /* every group made, freed at the end */
    size_t npool, cappool;
    PyObject **seen; /* the objects being printed, for cycles */
    size_t nseen, capseen;
} Printer;

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (q == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

/* ---- output ---------------------------------------------------------------------------- */

static int write_str(Printer *p, PyObject *s)
{
    return PyList_Append(p->out, s);
}

static int write_newline(Printer *p, Py_ssize_t indent)
{
    char small[128],
        *b = indent < (Py_ssize_t)sizeof small - 1 ? small : malloc((size_t)indent + 1);
    if (b == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b[0] = '\n';
    memset(b + 1, ' ', (size_t)indent);
    PyObject *s = PyUnicode_FromStringAndSize(b, indent + 1);
    if (b != small)
        free(b);
    int rc = s ? write_str(p, s) : -1;
    Py_XDECREF(s);
    return rc;
}

/* ---- the group queue: groups by depth, outermost first ------------------------------- */

static int queue_add(Printer *p, Group *g)
{
    if ((size_t)g->depth >= p->nlevels) {
        Level *l = realloc(p->levels, ((size_t)g->depth + 1) * sizeof *l);
        if (l == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(l + p->nlevels, 0, ((size_t)g->depth + 1 - p->nlevels) * sizeof *l);
        p->levels = l;
        p->nlevels = (size_t)g->depth + 1;
    }
    Level *l = &p->levels[g->depth];
    if (grow((void **)&l->items, &l->cap, l->n + 1, sizeof *l->items) < 0)
        return -1;
    l->items[l->n++] = g;
    return 0;
}

static void level_del(Level *l, size_t i)
{
    memmove(l->items + i, l->items + i + 1, (l->n - i - 1) * sizeof *l->items);
    l->n--;
}

static void queue_remove(Printer *p, Group *g)
{
    if ((size_t)g->depth >= p->nlevels)
        return;
    Level *l = &p->levels[g->depth];
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i] == g) {
            level_del(l, i);
            return;
        }
}

/* The group to break: at the shallowest depth that has one with
 * breakables, the last such; levels passed over have all their groups
 * marked broken and are emptied. IPython removes from that level the
 * entry at the found one's position counted from the end; the same entry
 * is removed here, so that later choices match. */
static Group *queue_take(Printer *p)
{
    for (size_t d = 0; d < p->nlevels; d++) {
        Level *l = &p->levels[d];
        for (size_t k = 0; k < l->n; k++) {
            Group *g = l->items[l->n - 1 - k];
            if (g->pending) {
                level_del(l, k);
                g->want_break = 1;
                return g;
            }
        }
        for (size_t i = 0; i < l->n; i++)
            l->items[i]->want_break = 1;
        l->n = 0;
    }
    return NULL;
}

/* ---- the buffer ---------------------------------------------------------------------------- */

static int push_item(Printer *p, Item it)
{
    if (p->head + p->len == p->cap && p->head > 0) { /* slide down before growing */
        memmove(p->buf, p->buf + p->head, p->len * sizeof *p->buf);
        p->head = 0;
    }
    if (grow((void **)&p->buf, &p->cap, p->head + p->len + 1, sizeof *p->buf) < 0)
        return -1;
    p->buf[p->head + p->len++] = it;
    return 0;
}

/* Writes the buffer's first item; returns the width of the line after it
 * or -1 with an exception set. */
static Py_ssize_t output_first(Printer *p)
{
    Item it = p->buf[p->head++];
    p->len--;
    p->buf_width -= it.width;
    if (it.text) {
        int rc = write_str(p, it.text);
        Py_DECREF(it.text);
        return rc < 0 ? -1 : p->out_width + it.width;
    }
    it.group->pending--;
    if (it.group->want_break)
        return write_newline(p, it.indent) < 0 ? -1 : it.indent;
    if (it.group->pending == 0)
        queue_remove(p, it.group);
    PyObject *sp = PyUnicode_FromString(" ");
    int rc = sp ? write_str(p, sp) : -1;
    Py_XDECREF(sp);
    return rc < 0 ? -1 : p->out_width + it.width;
}

static int break_group(Printer *p, Group *g)
{
    while (g->pending) {
        Py_ssize_t w = output_first(p);
        if (w < 0)
            return -1;
        p->out_width = w;
    }
    while (p->len && p->buf[p->head].text) {
        Py_ssize_t w = output_first(p);
        if (w < 0)
            return -1;
        p->out_width = w;
    }
    return 0;
}

static int break_outer_groups(Printer *p)
{
    while (MAX_WIDTH < p->out_width + p->buf_width) {
        Group *g = queue_take(p);
        if (g == NULL)
            return 0;
        if (break_group(p, g) < 0)
            return -1;
    }
    return 0;
}

static int flush(Printer *p)
{
    while (p->len) {
        if (output_first(p) < 0)
            return -1;
    }
    p->buf_width = 0;
    return 0;
}

/* ---- the printer's verbs: text, breakable, break, group ----------------------------- */

static int text(Printer *p, PyObject *s)
{
    Py_ssize_t w = PyUnicode_GetLength(s);
    if (w < 0)
        return -1;
    if (p->len == 0) {
        p->out_width += w;
        return write_str(p, s);
    }
    if (push_item(p, (Item){Py_NewRef(s), w, 0, NULL}) < 0) {
        Py_DECREF(s);
        return -1;
    }
    p->buf_width += w;
    return break_outer_groups(p);
}

static int textc(Printer *p, const char *s)
{
    PyObject *o = PyUnicode_FromString(s);
    int rc = o ? text(p, o) : -1;
    Py_XDECREF(o);
    return rc;
}

static int breakable(Printer *p)
{
    Group *g = p->stack[p->nstack - 1];
    if (g->want_break) {
        if (flush(p) < 0 || write_newline(p, p->indentation) < 0)
            return -1;
        p->out_width = p->indentation;
        return 0;
    }
    if (push_item(p, (Item){NULL, 1, p->indentation, g}) < 0)
        return -1;
    g->pending++;
    p->buf_width += 1;
    return break_outer_groups(p);
}

/* A newline the value's own repr has: its group and the outermost broken. */
static int hard_break(Printer *p)
{
    Group *g = queue_take(p);
    if ((g && break_group(p, g) < 0) || flush(p) < 0 || write_newline(p, p->indentation) < 0)
        return -1;
    p->out_width = p->indentation;
    p->buf_width = 0;
    return 0;
}

static int begin_group(Printer *p, Py_ssize_t indent, const char *open)
{
    if (open && *open && textc(p, open) < 0)
        return -1;
    if (grow((void **)&p->pool, &p->cappool, p->npool + 1, sizeof *p->pool) < 0 ||
        grow((void **)&p->stack, &p->capstack, p->nstack + 1, sizeof *p->stack) < 0)
        return -1;
    Group *g = calloc(1, sizeof *g);
    if (g == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    p->pool[p->npool++] = g;
    g->depth = p->stack[p->nstack - 1]->depth + 1;
    p->stack[p->nstack++] = g;
    if (queue_add(p, g) < 0)
        return -1;
    p->indentation += indent;
    return 0;
}

static int end_group(Printer *p, Py_ssize_t dedent, const char *close)
{
    p->indentation -= dedent;
    Group *g = p->stack[--p->nstack];
    if (g->pending == 0)
        queue_remove(p, g);
    return close && *close ? textc(p, close) : 0;
}

/* ---- the printers -------------------------------------------------------------------------- */

static int pretty(Printer *p, PyObject *obj);

/* The repr, its lines joined by hard breaks. */
static int print_repr(Printer *p, PyObject *obj)
{
    PyObject *r = PyObject_Repr(obj);
    PyObject *lines = r ? PyUnicode_Splitlines(r, 0) : NULL;
    Py_XDECREF(r);
    if (lines == NULL || begin_group(p, 0, NULL) < 0)
        goto error;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines); i++)
        if ((i && hard_break(p) < 0) || text(p, PyList_GET_ITEM(lines, i)) < 0)
            goto error;
    Py_DECREF(lines);
    return end_group(p, 0, NULL);
error:
    Py_XDECREF(lines);
    return PR_ERROR;
}

/* ", " between items (a breakable after the comma); after MAX_SEQ items,
 * ", ..." and 1 to say stop. */
static int item_sep(Printer *p, Py_ssize_t idx)
{
    if (idx == 0)
        return 0;
    if (textc(p, ",") < 0 || breakable(p) < 0)
        return -1;
    if (idx >= MAX_SEQ)
        return textc(p, "...") < 0 ? -1 : 1;
    return 0;
}

/* The items of an iterable, each pretty-printed, at most MAX_SEQ. */
static int print_items(Printer *p, PyObject *iterable)
{
    PyObject *it = PyObject_GetIter(iterable), *x;
    if (it == NULL)
        return PR_ERROR;
    int rc = PR_OK;
    for (Py_ssize_t i = 0; rc == PR_OK && (x = PyIter_Next(it)) != NULL; i++) {
        int s = item_sep(p, i);
        rc = s < 0 ? PR_ERROR : s > 0 ? 2 : pretty(p, x);
        Py_DECREF(x);
    }
    Py_DECREF(it);
    if (rc == 2)
        rc = PR_OK;
    return rc == PR_OK && PyErr_Occurred() ? PR_ERROR : rc;
}

static int print_seq(Printer *p, PyObject *obj, int cycle, const char *start, const char *end)
{
    if (cycle) {
        char buf[16];
        snprintf(buf, sizeof buf, "%s...%s", start, end);
        return textc(p, buf);
    }
    Py_ssize_t step = (Py_ssize_t)strlen(start);
    if (begin_group(p, step, start) < 0)
        return PR_ERROR;
    int rc = print_items(p, obj);
    if (rc != PR_OK)
        return rc;
    if (PyTuple_Check(obj) && PyTuple_GET_SIZE(obj) == 1 && textc(p, ",") < 0)
        return PR_ERROR;
    return end_group(p, step, end);
}

/* sorted(items), else sorted(items, key=str), else the items as they come. */
static PyObject *sorted_items(PyObject *obj)
{
    PyObject *l = PySequence_List(obj);
    if (l == NULL || PyList_Sort(l) == 0)
        return l;
    PyErr_Clear();
    PyObject *sorted = PyDict_GetItemString(PyEval_GetBuiltins(), "sorted"); /* borrowed */
    PyObject *args = sorted ? PyTuple_Pack(1, l) : NULL;
    PyObject *kw = args ? Py_BuildValue("{s:O}", "key", (PyObject *)&PyUnicode_Type) : NULL;
    PyObject *s = kw ? PyObject_Call(sorted, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    if (s) {
        Py_DECREF(l);
        return s;
    }
    PyErr_Clear();
    return l;
}

static int print_set(Printer *p, PyObject *obj, int cycle, const char *start, const char *end)
{
    if (cycle) {
        char buf[32];
        snprintf(buf, sizeof buf, "%s...%s", start, end);
        return textc(p, buf);
    }
    Py_ssize_t n = PyObject_Size(obj);
    if (n < 0)
        return PR_ERROR;
    if (n == 0) {
        PyObject *name = PyType_GetName(Py_TYPE(obj));
        PyObject *s = name ? PyUnicode_FromFormat("%U()", name) : NULL;
        Py_XDECREF(name);
        int rc = s ? text(p, s) : PR_ERROR;
        Py_XDECREF(s);
        return rc;
    }
    Py_ssize_t step = (Py_ssize_t)strlen(start);
    if (begin_group(p, step, start) < 0)
        return PR_ERROR;
    PyObject *items = n >= MAX_SEQ ? Py_NewRef(obj) : sorted_items(obj);
    if (items == NULL)
        return PR_ERROR;
    int rc = print_items(p, items);
    Py_DECREF(items);
    return rc != PR_OK ? rc : end_group(p, step, end);
}

static int print_dict(Printer *p, PyObject *obj, int cycle, const char *start, const char *end)
{
    if (cycle)
        return textc(p, "{...}");
    Py_ssize_t step = (Py_ssize_t)strlen(start);
    if (begin_group(p, step, start) < 0)
        return PR_ERROR;
    PyObject *keys = PyMapping_Keys(obj);
    PyObject *it = keys ? PyObject_GetIter(keys) : NULL, *k;
    Py_XDECREF(keys);
    if (it == NULL)
        return PR_ERROR;
    int rc = PR_OK;
    for (Py_ssize_t i = 0; rc == PR_OK && (k = PyIter_Next(it)) != NULL; i++) {
        int s = item_sep(p, i);
        if (s != 0) {
            rc = s < 0 ? PR_ERROR : 2;
        } else if ((rc = pretty(p, k)) == PR_OK && (rc = textc(p, ": ")) == PR_OK) {
            PyObject *v = PyObject_GetItem(obj, k);
            rc = v ? pretty(p, v) : PR_ERROR;
            Py_XDECREF(v);
        }
        Py_DECREF(k);
    }
    Py_DECREF(it);
    if (rc == 2)
        rc = PR_OK;
    if (rc == PR_OK && PyErr_Occurred())
        rc = PR_ERROR;
    return rc != PR_OK ? rc : end_group(p, step, end);
}

/* name(arg, ..., key=value, ...), as IPython's CallExpression; args and
 * kwargs may be NULL; raw, when given, is the one argument, as text. */
static int print_call(Printer *p, PyObject *name, PyObject *args, PyObject *kwargs, const char *raw)
{
    PyObject *prefix = PyUnicode_FromFormat("%U(", name);
    if (prefix == NULL)
        return PR_ERROR;
    Py_ssize_t step = PyUnicode_GetLength(prefix);
    const char *pre = PyUnicode_AsUTF8(prefix);
    int rc =
        pre && begin_group(p, 0, NULL) == 0 && begin_group(p, step, pre) == 0 ? PR_OK : PR_ERROR;
    Py_DECREF(prefix);
    int started = 0;
    if (rc == PR_OK && raw) {
        rc = begin_group(p, 0, NULL) < 0 || textc(p, raw) < 0 || end_group(p, 0, NULL) < 0
                 ? PR_ERROR
                 : PR_OK;
        started = 1;
    }
    for (Py_ssize_t i = 0; rc == PR_OK && args && i < PyTuple_GET_SIZE(args); i++) {
        if (started++ && (textc(p, ",") < 0 || breakable(p) < 0))
            return PR_ERROR;
        rc = pretty(p, PyTuple_GET_ITEM(args, i));
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (rc == PR_OK && kwargs && PyDict_Next(kwargs, &pos, &key, &value)) {
        if (started++ && (textc(p, ",") < 0 || breakable(p) < 0))
            return PR_ERROR;
        PyObject *ap = PyUnicode_FromFormat("%S=", key);
        const char *a = ap ? PyUnicode_AsUTF8(ap) : NULL;
        Py_ssize_t astep = ap ? PyUnicode_GetLength(ap) : 0;
        rc = a && begin_group(p, astep, a) == 0 ? pretty(p, value) : PR_ERROR;
        Py_XDECREF(ap);
        if (rc == PR_OK && end_group(p, astep, NULL) < 0)
            rc = PR_ERROR;
    }
    if (rc != PR_OK)
        return rc;
    return end_group(p, step, ")") < 0 || end_group(p, 0, NULL) < 0 ? PR_ERROR : PR_OK;
}

/* attr of obj, or NULL with no exception when it has none. */
static PyObject *safe_attr(PyObject *obj, const char *attr)
{
    PyObject *v = PyObject_GetAttrString(obj, attr);
    if (v == NULL)
        PyErr_Clear();
    return v;
}

/* "name" for builtins' classes and functions, "module.name" for others
 * (a module of None counts as builtins' when none_is_builtin is set, as
 * for IPython's functions and classes, not its exceptions). */
static PyObject *dotted(PyObject *mod, PyObject *name, int none_is_builtin)
{
    int builtin;
    if (mod == NULL || mod == Py_None)
        builtin = none_is_builtin;
    else if (PyUnicode_Check(mod))
        builtin = PyUnicode_CompareWithASCIIString(mod, "builtins") == 0 ||
                  PyUnicode_CompareWithASCIIString(mod, "__builtin__") == 0 ||
                  PyUnicode_CompareWithASCIIString(mod, "exceptions") == 0 ||
                  (none_is_builtin && PyUnicode_GetLength(mod) == 0);
    else
        builtin = 0;
    if (builtin)
        return Py_NewRef(name);
    return PyUnicode_FromFormat("%S.%U", mod ? mod : Py_None, name);
}

static PyObject *qualname(PyObject *obj)
{
    PyObject *n = safe_attr(obj, "__qualname__");
    if (n && !PyUnicode_Check(n))
        Py_CLEAR(n);
    if (n == NULL)
        n = PyObject_GetAttrString(obj, "__name__");
    return n;
}

/* obj's (a class's, a function's) name as IPython shows it: dotted() of
 * its module and qualname. Its __module__ may be missing (None then) unless
 * module_required. A new str, or NULL with an exception set. */
static PyObject *full_name(PyObject *obj, int none_is_builtin, int module_required)
{
    PyObject *name = qualname(obj);
    if (name == NULL)
        return NULL;
    PyObject *mod =
        module_required ? PyObject_GetAttrString(obj, "__module__") : safe_attr(obj, "__module__");
    PyObject *full = mod || !module_required ? dotted(mod, name, none_is_builtin) : NULL;
    Py_DECREF(name);
    Py_XDECREF(mod);
    return full;
}

static int print_type(Printer *p, PyObject *cls)
{
    /* A metaclass with its own __repr__ (the first in its MRO that defines
     * one is not type) keeps that repr. */
    PyObject *mro = PyObject_GetAttrString((PyObject *)Py_TYPE(cls), "__mro__");
    if (mro == NULL || !PyTuple_Check(mro)) {
        Py_XDECREF(mro);
        return PR_ERROR;
    }
    int own = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *m = PyTuple_GET_ITEM(mro, i);
        PyObject *d = safe_attr(m, "__dict__");
        int has = d ? PyMapping_HasKeyString(d, "__repr__") : 0;
        Py_XDECREF(d);
        if (has) {
            own = m != (PyObject *)&PyType_Type;
            break;
        }
    }
    Py_DECREF(mro);
    if (own)
        return print_repr(p, cls);
    PyObject *s = full_name(cls, 1, 0);
    int rc = s ? text(p, s) : PR_ERROR;
    Py_XDECREF(s);
    return rc;
}

static int print_function(Printer *p, PyObject *f)
{
    PyObject *full = full_name(f, 1, 1);
    if (full == NULL)
        return PR_ERROR;
    PyObject *inspect = PyImport_ImportModule("inspect");
    PyObject *sig = inspect ? PyObject_CallMethod(inspect, "signature", "(O)", f) : NULL;
    Py_XDECREF(inspect);
    PyObject *s = NULL;
    if (sig)
        s = PyUnicode_FromFormat("<function %U%S>", full, sig);
    else if (PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        s = PyUnicode_FromFormat("<function %U>", full);
    }
    Py_XDECREF(sig);
    Py_DECREF(full);
    int rc = s ? text(p, s) : PR_ERROR;
    Py_XDECREF(s);
    return rc;
}

static int print_exception(Printer *p, PyObject *exc)
{
    PyObject *cls = PyObject_GetAttrString(exc, "__class__");
    PyObject *full = cls ? full_name(cls, 0, 1) : NULL;
    Py_XDECREF(cls);
    PyObject *args = full ? safe_attr(exc, "args") : NULL;
    PyObject *targs = args ? PySequence_Tuple(args) : full ? PyTuple_New(0) : NULL;
    Py_XDECREF(args);
    int rc = targs ? print_call(p, full, targs, NULL, NULL) : PR_ERROR;
    Py_XDECREF(full);
    Py_XDECREF(targs);
    return rc;
}

static int print_default(Printer *p, PyObject *obj, int cycle)
{
    static PyObject *object_repr; /* object.__repr__, for the whole session */
    if (object_repr == NULL &&
        (object_repr = PyObject_GetAttrString((PyObject *)&PyBaseObject_Type, "__repr__")) == NULL)
        return PR_ERROR;
    PyObject *klass = safe_attr(obj, "__class__");
    if (klass == NULL)
        klass = Py_NewRef((PyObject *)Py_TYPE(obj));
    PyObject *r = safe_attr(klass, "__repr__");
    int own = r != object_repr;
    Py_XDECREF(r);
    int rc;
    if (own) {
        rc = print_repr(p, obj);
    } else {
        char at[64];
        snprintf(at, sizeof at, " at 0x%jx%s", (uintmax_t)(uintptr_t)obj, cycle ? " ..." : "");
        rc = begin_group(p, 1, "<") < 0 ? PR_ERROR : pretty(p, klass);
        if (rc == PR_OK && (textc(p, at) < 0 || end_group(p, 1, ">") < 0))
            rc = PR_ERROR;
    }
    Py_DECREF(klass);
    return rc;
}

/* collections' and types' classes that IPython shows as constructor
 * calls: defaultdict(factory, {...}), OrderedDict([...]), deque([...],
 * maxlen=n), Counter({...}) by count, UserList([...]), namespace(k=v). */
static int print_ctor(Printer *p, PyObject *obj, int cycle, const char *kind)
{
    PyObject *cls = PyObject_GetAttrString(obj, "__class__");
    PyObject *name = !strcmp(kind, "SimpleNamespace") ? PyUnicode_FromString("namespace")
                     : cls                            ? PyObject_GetAttrString(cls, "__name__")
                                                      : NULL;
    Py_XDECREF(cls);
    if (name == NULL)
        return PR_ERROR;
    PyObject *args = NULL, *kwargs = NULL;
    int rc = PR_ERROR;
    if (cycle) {
        rc = print_call(p, name, NULL, NULL, "...");
        goto done;
    }
    Py_ssize_t n = !strcmp(kind, "SimpleNamespace") ? 0 : PyObject_Size(obj);
    if (n < 0)
        goto done;
    if (!strcmp(kind, "defaultdict")) {
        PyObject *f = PyObject_GetAttrString(obj, "default_factory");
        PyObject *d = f ? PyDict_New() : NULL;
        if (d && PyDict_Update(d, obj) == 0)
            args = PyTuple_Pack(2, f, d);
        Py_XDECREF(f);
        Py_XDECREF(d);
    } else if (!strcmp(kind, "OrderedDict")) {
        PyObject *items = n ? PyMapping_Items(obj) : NULL;
        args = !n ? PyTuple_New(0) : items ? PyTuple_Pack(1, items) : NULL;
        Py_XDECREF(items);
    } else if (!strcmp(kind, "deque")) {
        PyObject *l = PySequence_List(obj);
        PyObject *maxlen = l ? PyObject_GetAttrString(obj, "maxlen") : NULL;
        args = maxlen ? PyTuple_Pack(1, l) : NULL;
        if (args && maxlen != Py_None)
            kwargs = Py_BuildValue("{s:O}", "maxlen", maxlen);
        if (args && maxlen != Py_None && kwargs == NULL)
            Py_CLEAR(args);
        Py_XDECREF(l);
        Py_XDECREF(maxlen);
    } else if (!strcmp(kind, "Counter")) {
        PyObject *mc = n ? PyObject_CallMethod(obj, "most_common", NULL) : NULL;
        PyObject *d = mc ? PyDict_New() : NULL;
        if (d && PyDict_MergeFromSeq2(d, mc, 1) == 0)
            args = PyTuple_Pack(1, d);
        if (!n)
            args = PyTuple_New(0);
        Py_XDECREF(mc);
        Py_XDECREF(d);
    } else if (!strcmp(kind, "UserList")) {
        PyObject *data = PyObject_GetAttrString(obj, "data");
        args = data ? PyTuple_Pack(1, data) : NULL;
        Py_XDECREF(data);
    } else { /* SimpleNamespace */
        PyObject *d = PyObject_GetAttrString(obj, "__dict__");
        args = d ? PyTuple_New(0) : NULL;
        kwargs = d && PyDict_Check(d) ? PyDict_Copy(d) : NULL;
        if (kwargs == NULL)
            Py_CLEAR(args);
        Py_XDECREF(d);
    }
    if (args)
        rc = print_call(p, name, args, kwargs, NULL);
done:
    Py_DECREF(name);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    return rc;
}

/* The printer IPython finds for a class (its first match walking the
 * instance's MRO), by name where IPython defers the import. */
static const char *by_name(PyObject *cls)
{
    static const struct {
        const char *mod, *name;
    } deferred[] = {
        {"collections", "defaultdict"},
        {"collections", "OrderedDict"},
        {"collections", "deque"},
        {"collections", "Counter"},
        {"collections", "UserList"},
        {"types", "SimpleNamespace"},
        {"os", "_Environ"},
    };
    PyObject *mod = safe_attr(cls, "__module__"), *name = safe_attr(cls, "__name__");
    const char *hit = NULL;
    if (mod && name && PyUnicode_Check(mod) && PyUnicode_Check(name))
        for (size_t i = 0; i < sizeof deferred / sizeof deferred[0] && !hit; i++)
            if (PyUnicode_CompareWithASCIIString(mod, deferred[i].mod) == 0 &&
                PyUnicode_CompareWithASCIIString(name, deferred[i].name) == 0)
                hit = deferred[i].name;
    Py_XDECREF(mod);
    Py_XDECREF(name);
    return hit;
}

static int in_dict(PyObject *cls, const char *key)
{
    PyObject *d = safe_attr(cls, "__dict__");
    int has = d ? PyMapping_HasKeyString(d, key) : 0;
    Py_XDECREF(d);
    return has;
}

static int dispatch(Printer *p, PyObject *obj, int cycle)
{
    /* The scalars IPython shows by their repr, without the walk. */
    if (PyLong_CheckExact(obj) || PyFloat_CheckExact(obj) || PyUnicode_CheckExact(obj) ||
        PyBytes_CheckExact(obj) || PyBool_Check(obj) || obj == Py_None)
        return print_repr(p, obj);
    PyObject *klass = safe_attr(obj, "__class__");
    if (klass == NULL || !PyType_Check(klass))
        Py_XSETREF(klass, Py_NewRef((PyObject *)Py_TYPE(obj)));
    PyObject *mro = PyObject_GetAttrString(klass, "__mro__");
    Py_DECREF(klass);
    if (mro == NULL || !PyTuple_Check(mro)) {
        Py_XDECREF(mro);
        return PR_ERROR;
    }
    int rc = -2;
    for (Py_ssize_t i = 0; rc == -2 && i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *cls = PyTuple_GET_ITEM(mro, i);
        const char *named;
        if (cls == (PyObject *)&PyList_Type)
            rc = print_seq(p, obj, cycle, "[", "]");
        else if (cls == (PyObject *)&PyTuple_Type)
            rc = print_seq(p, obj, cycle, "(", ")");
        else if (cls == (PyObject *)&PyDict_Type)
            rc = print_dict(p, obj, cycle, "{", "}");
        else if (cls == (PyObject *)&PyDictProxy_Type)
            rc = print_dict(p, obj, cycle, "mappingproxy({", "})");
        else if (cls == (PyObject *)&PySet_Type)
            rc = print_set(p, obj, cycle, "{", "}");
        else if (cls == (PyObject *)&PyFrozenSet_Type)
            rc = print_set(p, obj, cycle, "frozenset({", "})");
        else if (cls == (PyObject *)&PyType_Type)
            rc = print_type(p, obj);
        else if (cls == (PyObject *)&PyFunction_Type || cls == (PyObject *)&PyCFunction_Type)
            rc = print_function(p, obj);
        else if (cls == PyExc_BaseException)
            rc = print_exception(p, obj);
        else if (cls == (PyObject *)&PySuper_Type)
            rc = PR_FOREIGN;
        else if ((named = by_name(cls)) != NULL)
            rc = !strcmp(named, "_Environ") ? print_dict(p, obj, cycle, "environ{", "}")
                                            : print_ctor(p, obj, cycle, named);
        else if (in_dict(cls, "_repr_pretty_"))
            rc = PR_FOREIGN; /* the class draws itself with IPython's printer */
        else if (cls != (PyObject *)&PyBaseObject_Type && in_dict(cls, "__repr__"))
            rc = print_repr(p, obj);
    }
    Py_DECREF(mro);
    return rc == -2 ? print_default(p, obj, cycle) : rc;
}

static int pretty(Printer *p, PyObject *obj)
{
    int cycle = 0;
    for (size_t i = 0; i < p->nseen; i++)
        cycle |= p->seen[i] == obj;
    if (grow((void **)&p->seen, &p->capseen, p->nseen + 1, sizeof *p->seen) < 0)
        return PR_ERROR;
    if (Py_EnterRecursiveCall(" while laying out a value"))
        return PR_ERROR;
    p->seen[p->nseen++] = obj;
    int rc = begin_group(p, 0, NULL) < 0 ? PR_ERROR : dispatch(p, obj, cycle);
    if (rc == PR_OK && end_group(p, 0, NULL) < 0)
        rc = PR_ERROR;
    p->nseen--;
    Py_LeaveRecursiveCall();
    return rc;
}

/* ---- entry ------------------------------------------------------------------------------------
 */

static void printer_free(Printer *p)
{
    Py_XDECREF(p->out);
    for (size_t i = 0; i < p->len; i++)
        Py_XDECREF(p->buf[p->head + i].text);
    free(p->buf);
    free(p->stack);
    for (size_t i = 0; i < p->nlevels; i++)
        free(p->levels[i].items);
    free(p->levels);
    for (size_t i = 0; i < p->npool; i++)
        free(p->pool[i]);
    free(p->pool);
    free(p->seen);
}

/* IPython's own printer, for values that ask for it; where IPython is not
 * installed, the repr. */
static PyObject *ipython_pretty(PyObject *obj)
{
    PyObject *mod = PyImport_ImportModule("IPython.lib.pretty");
    if (mod == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError))
            return NULL;
        PyErr_Clear();
        return PyObject_Repr(obj);
    }
    PyObject *f = PyObject_GetAttrString(mod, "pretty");
    Py_DECREF(mod);
    PyObject *args = f ? PyTuple_Pack(1, obj) : NULL;
    PyObject *kw =
        args ? Py_BuildValue("{s:i, s:i}", "max_width", MAX_WIDTH, "max_seq_length", MAX_SEQ)
             : NULL;
    PyObject *r = kw ? PyObject_Call(f, args, kw) : NULL;
    Py_XDECREF(f);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    return r;
}

PyObject *pretty_text(PyObject *obj)
{
    Printer p = {0};
    Group root = {0};
    PyObject *res = NULL;
    p.out = PyList_New(0);
    if (p.out == NULL || grow((void **)&p.stack, &p.capstack, 1, sizeof *p.stack) < 0)
        goto done;
    p.stack[p.nstack++] = &root;
    if (queue_add(&p, &root) < 0)
        goto done;
    int rc = pretty(&p, obj);
    if (rc == PR_OK && flush(&p) == 0) {
        PyObject *empty = PyUnicode_FromString("");
        res = empty ? PyUnicode_Join(empty, p.out) : NULL;
        Py_XDECREF(empty);
    } else if (rc == PR_FOREIGN) {
        res = ipython_pretty(obj);
    }
done:
    printer_free(&p);
    return res;
}
