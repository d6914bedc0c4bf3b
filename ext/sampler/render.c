/* sampler/render.c - the text and HTML of %sample, and its export formats.
 *
 * Builds a function-level call tree from a profile's stacks, then writes it
 * condensed (library frames folded unless hot, pyinstrument-style), as an
 * icicle flame graph (an SVG in an <img> data URI, drawn to read on light
 * and dark pages), as per-line heat of cell code, as flamegraph.pl's
 * collapsed stacks and as speedscope JSON.
 */
#include "sampler/render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SHARE      0.01 /* the tree drops nodes below this share of the total */
#define HOT_SHARE      0.05 /* a library frame with this much self time stays shown */
#define SVG_WIDTH      960.0
#define SVG_ROW        18
#define SVG_MAX_ROWS   64
#define HEAT_FUNCS     6
#define HEAT_MAX_LINES 40

/* ---- cells ---------------------------------------------------------------------------- */

/* The In [N] of code from a notebook cell, or -1 for other code. Besides
 * report_cell_number()'s names, ipykernel compiles each cell as
 * <tmp>/ipykernel_<pid>/<hash>.py, and IPython's compiler maps that name to
 * its execution count (0 when it does not know it). Never raises. */
static long cell_number(const char *file)
{
    long n = report_cell_number(file);
    if (n >= 0)
        return n;
    const char *p = strstr(file, "/ipykernel_"), *slash = p ? strchr(p + 1, '/') : NULL;
    size_t len = strlen(file);
    if (slash == NULL || strchr(slash + 1, '/') != NULL || len < 3 ||
        strcmp(file + len - 3, ".py") != 0)
        return -1;
    n = 0;
    PyObject *modules = PySys_GetObject("modules"); /* borrowed */
    PyObject *ip = modules ? PyDict_GetItemString(modules, "IPython") : NULL;
    PyObject *shell = ip ? PyObject_CallMethod(ip, "get_ipython", NULL) : NULL;
    PyObject *comp = shell && shell != Py_None ? PyObject_GetAttrString(shell, "compile") : NULL;
    PyObject *map = comp ? PyObject_GetAttrString(comp, "_filename_map") : NULL;
    PyObject *v = map && PyDict_Check(map) ? PyDict_GetItemString(map, file) : NULL;
    if (v != NULL && PyLong_Check(v))
        n = PyLong_AsLong(v);
    Py_XDECREF(shell);
    Py_XDECREF(comp);
    Py_XDECREF(map);
    PyErr_Clear();
    return n;
}

/* ---- functions and the call tree -------------------------------------------------- */

typedef struct {
    const char *file; /* borrowed from the profile's frame tuples */
    const char *name;
    int first;
    long cell; /* report_cell_number(file): In [N], or -1 */
    int lib;   /* from the standard library or an installed package */
    char module[80];
} fn_info;

typedef struct tnode {
    int fn; /* index into fns; -1 for a thread's root */
    double total, self;
    struct tnode **kids;
    int nkids, capkids;
} tnode;

typedef struct {
    fn_info *fns;
    int nfns, capfns;
    PyObject *fnids;  /* owned dict (filename, qualname, firstlineno) -> int */
    PyObject *labels; /* owned list of thread labels, one per root */
    tnode **roots;
    int nroots;
    double grand;      /* seconds over all stacks */
    PyObject *libdirs; /* owned list of str: library path prefixes */
} tree;

static tnode *tnode_new(int fn)
{
    tnode *n = calloc(1, sizeof *n);
    if (n != NULL)
        n->fn = fn;
    return n;
}

static void tnode_free(tnode *n)
{
    if (n == NULL)
        return;
    for (int i = 0; i < n->nkids; i++)
        tnode_free(n->kids[i]);
    free(n->kids);
    free(n);
}

static tnode *tnode_child(tnode *n, int fn)
{
    for (int i = 0; i < n->nkids; i++)
        if (n->kids[i]->fn == fn)
            return n->kids[i];
    if (n->nkids == n->capkids) {
        int cap = n->capkids ? n->capkids * 2 : 4;
        tnode **k = realloc(n->kids, (size_t)cap * sizeof *k);
        if (k == NULL)
            return NULL;
        n->kids = k;
        n->capkids = cap;
    }
    tnode *c = tnode_new(fn);
    if (c != NULL)
        n->kids[n->nkids++] = c;
    return c;
}

static int by_total(const void *a, const void *b)
{
    double x = (*(tnode *const *)a)->total, y = (*(tnode *const *)b)->total;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* qsort of n items, which may be none at a NULL base (a leaf's kids):
 * qsort itself wants a non-null array even for no elements, and under UBSan
 * (halt_on_error) that null ended the kernel in every %sample report. */
static void sort_items(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}

static void tnode_sort(tnode *n)
{
    sort_items(n->kids, (size_t)n->nkids, sizeof *n->kids, by_total);
    for (int i = 0; i < n->nkids; i++)
        tnode_sort(n->kids[i]);
}

static void tree_free(tree *t)
{
    for (int i = 0; i < t->nroots; i++)
        tnode_free(t->roots[i]);
    free(t->roots);
    free(t->fns);
    Py_XDECREF(t->fnids);
    Py_XDECREF(t->labels);
    Py_XDECREF(t->libdirs);
    memset(t, 0, sizeof *t);
}

/* Returns a new list of the directories library code lives in. */
static PyObject *library_dirs(void)
{
    PyObject *sc = PyImport_ImportModule("sysconfig"), *paths = NULL, *out = NULL;
    static const char *const keys[] = {"stdlib", "platstdlib", "purelib", "platlib"};
    if (sc == NULL)
        return NULL;
    paths = PyObject_CallMethod(sc, "get_paths", NULL);
    if (paths == NULL || !PyDict_Check(paths))
        goto error;
    out = PyList_New(0);
    if (out == NULL)
        goto error;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        PyObject *p = PyDict_GetItemString(paths, keys[i]);
        if (p != NULL && PyList_Append(out, p) < 0)
            goto error;
    }
    Py_DECREF(sc);
    Py_DECREF(paths);
    return out;
error:
    if (PyErr_Occurred() == NULL)
        PyErr_SetString(PyExc_RuntimeError, "sysconfig.get_paths() is not a dict");
    Py_XDECREF(sc);
    Py_XDECREF(paths);
    Py_XDECREF(out);
    return NULL;
}

/* Sets f->lib and f->module: the package or module a library file is in. */
static void classify(tree *t, fn_info *f)
{
    const char *file = f->file, *rest = NULL;
    f->lib = 0;
    f->module[0] = '\0';
    if (f->cell >= 0 || file[0] == '<') {
        if (strncmp(file, "<frozen ", 8) == 0) {
            f->lib = 1;
            snprintf(f->module, sizeof f->module, "%.*s", (int)strcspn(file + 8, ">"), file + 8);
        }
        return;
    }
    const char *markers[] = {"/site-packages/", "/dist-packages/"};
    for (int i = 0; i < 2 && rest == NULL; i++) {
        const char *m = strstr(file, markers[i]);
        if (m != NULL)
            rest = m + strlen(markers[i]);
    }
    for (Py_ssize_t i = 0; rest == NULL && i < PyList_GET_SIZE(t->libdirs); i++) {
        const char *d = PyUnicode_AsUTF8(PyList_GET_ITEM(t->libdirs, i));
        size_t n = d ? strlen(d) : 0;
        if (d == NULL) {
            PyErr_Clear();
            continue;
        }
        if (n > 0 && strncmp(file, d, n) == 0 && file[n] == '/')
            rest = file + n + 1;
    }
    if (rest == NULL)
        return;
    f->lib = 1;
    size_t n = strcspn(rest, "/");
    if (rest[n] == '\0' && n > 3 && strcmp(rest + n - 3, ".py") == 0)
        n -= 3;
    snprintf(f->module, sizeof f->module, "%.*s", (int)n, rest);
}

/* Returns the function id of frame (filename, qualname, firstlineno, ...),
 * adding it; -1 with an exception set. */
static int fn_id(tree *t, PyObject *frame)
{
    PyObject *key = PyTuple_GetSlice(frame, 0, 3);
    if (key == NULL)
        return -1;
    PyObject *have = PyDict_GetItemWithError(t->fnids, key);
    if (have != NULL) {
        Py_DECREF(key);
        return (int)PyLong_AsLong(have);
    }
    if (PyErr_Occurred())
        goto error;
    if (t->nfns == t->capfns) {
        int cap = t->capfns ? t->capfns * 2 : 64;
        fn_info *f = realloc(t->fns, (size_t)cap * sizeof *f);
        if (f == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        t->fns = f;
        t->capfns = cap;
    }
    fn_info *f = &t->fns[t->nfns];
    f->file = PyUnicode_AsUTF8(PyTuple_GET_ITEM(frame, 0));
    f->name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(frame, 1));
    f->first = (int)PyLong_AsLong(PyTuple_GET_ITEM(frame, 2));
    if (f->file == NULL || f->name == NULL || PyErr_Occurred())
        goto error;
    f->cell = cell_number(f->file);
    classify(t, f);
    PyObject *id = PyLong_FromLong(t->nfns);
    if (id == NULL || PyDict_SetItem(t->fnids, key, id) < 0) {
        Py_XDECREF(id);
        goto error;
    }
    Py_DECREF(id);
    Py_DECREF(key);
    return t->nfns++;
error:
    Py_DECREF(key);
    return -1;
}

/* Builds the call tree of prof's stacks. Returns 0, or -1 with an
 * exception set (t is to be freed either way). */
static int tree_build(tree *t, PyObject *stacks)
{
    memset(t, 0, sizeof *t);
    t->fnids = PyDict_New();
    t->labels = PyList_New(0);
    t->libdirs = library_dirs();
    if (t->fnids == NULL || t->labels == NULL || t->libdirs == NULL)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(stacks);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *label, *frames;
        unsigned int samples;
        double secs;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(stacks, i), "OO!Id", &label, &PyTuple_Type, &frames,
                              &samples, &secs))
            return -1;
        int r = 0;
        for (; r < t->nroots; r++) {
            int eq = PyObject_RichCompareBool(PyList_GET_ITEM(t->labels, r), label, Py_EQ);
            if (eq < 0)
                return -1;
            if (eq)
                break;
        }
        if (r == t->nroots) {
            tnode **roots = realloc(t->roots, (size_t)(r + 1) * sizeof *roots);
            if (roots == NULL)
                return PyErr_NoMemory(), -1;
            t->roots = roots;
            if ((t->roots[r] = tnode_new(-1)) == NULL)
                return PyErr_NoMemory(), -1;
            t->nroots++;
            if (PyList_Append(t->labels, label) < 0)
                return -1;
        }
        tnode *at = t->roots[r];
        at->total += secs;
        t->grand += secs;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(frames); k++) {
            int fn = fn_id(t, PyTuple_GET_ITEM(frames, k));
            if (fn < 0)
                return -1;
            at = tnode_child(at, fn);
            if (at == NULL)
                return PyErr_NoMemory(), -1;
            at->total += secs;
        }
        at->self += secs;
    }
    for (int r = 0; r < t->nroots; r++)
        tnode_sort(t->roots[r]);
    return 0;
}

/* ---- the condensed tree -------------------------------------------------------------- */

/* What the condensed tree shows: a node, or a group of hidden library
 * frames standing for the nodes under it. */
typedef struct ditem {
    tnode *n;       /* NULL for a hidden group */
    int hidden;     /* frames folded into the group */
    char mods[160]; /* their modules, comma-separated */
    int depth;      /* a node: how many nested calls of it this row stands for */
    double total;
    struct ditem **kids;
    int nkids, capkids;
} ditem;

static void ditem_free(ditem *d)
{
    if (d == NULL)
        return;
    for (int i = 0; i < d->nkids; i++)
        ditem_free(d->kids[i]);
    free(d->kids);
    free(d);
}

static int ditem_add(ditem *parent, ditem *kid)
{
    if (parent->nkids == parent->capkids) {
        int cap = parent->capkids ? parent->capkids * 2 : 4;
        ditem **k = realloc(parent->kids, (size_t)cap * sizeof *k);
        if (k == NULL)
            return -1;
        parent->kids = k;
        parent->capkids = cap;
    }
    parent->kids[parent->nkids++] = kid;
    return 0;
}

static void add_module(ditem *g, const char *mod)
{
    if (mod[0] == '\0')
        return;
    size_t n = strlen(mod);
    for (const char *p = g->mods; (p = strstr(p, mod)) != NULL; p += n)
        if ((p == g->mods || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return;
    size_t len = strlen(g->mods);
    if (len + n + 3 < sizeof g->mods)
        snprintf(g->mods + len, sizeof g->mods - len, "%s%s", len ? ", " : "", mod);
}

static ditem *condense(tree *t, tnode *n, int parent_user);

/* Adds to into the shown descendants of the hidden node n, counting the
 * hidden frames and their modules in group g. */
static int gather(tree *t, tnode *n, ditem *g, ditem *into)
{
    g->hidden++;
    add_module(g, t->fns[n->fn].module);
    for (int i = 0; i < n->nkids; i++) {
        tnode *k = n->kids[i];
        if (k->total < MIN_SHARE * t->grand)
            continue;
        const fn_info *f = &t->fns[k->fn];
        if (!f->lib || k->self >= HOT_SHARE * t->grand) {
            ditem *d = condense(t, k, 0);
            if (d == NULL || ditem_add(into, d) < 0) {
                ditem_free(d);
                return -1;
            }
        } else if (gather(t, k, g, into) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The condensed view of n (shown). parent_user: n's shown parent is user
 * code, so a library child is where user code enters the library. */
static ditem *condense(tree *t, tnode *n, int parent_user)
{
    ditem *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->n = n;
    d->total = n->total;
    int user = n->fn < 0 || !t->fns[n->fn].lib;
    (void)parent_user;
    for (int i = 0; i < n->nkids; i++) {
        tnode *k = n->kids[i];
        if (k->total < MIN_SHARE * t->grand)
            continue;
        const fn_info *f = &t->fns[k->fn];
        if (!f->lib || user || k->self >= HOT_SHARE * t->grand) {
            ditem *c = condense(t, k, user);
            if (c == NULL || ditem_add(d, c) < 0) {
                ditem_free(c);
                goto error;
            }
            continue;
        }
        ditem *g = calloc(1, sizeof *g);
        if (g == NULL || ditem_add(d, g) < 0) {
            free(g);
            goto error;
        }
        g->total = k->total;
        if (gather(t, k, g, g) < 0)
            goto error;
    }
    /* A function calling itself, and nothing else worth a row: one row */
    d->depth = 1;
    while (d->n != NULL && d->nkids == 1 && d->kids[0]->n != NULL &&
           d->kids[0]->n->fn == d->n->fn) {
        ditem *k = d->kids[0];
        free(d->kids);
        d->kids = k->kids;
        d->nkids = k->nkids;
        d->capkids = k->capkids;
        d->depth += k->depth;
        k->kids = NULL;
        k->nkids = 0;
        ditem_free(k);
    }
    return d;
error:
    ditem_free(d);
    return NULL;
}

/* "In [3]:12", or the file's base name and line. */
static void location(report_buf *b, const fn_info *f)
{
    if (f->cell > 0) {
        report_buf_printf(b, "In [%ld]:%d", f->cell, f->first);
        return;
    }
    const char *base = strrchr(f->file, '/');
    report_buf_printf(b, "%s:%d", base ? base + 1 : f->file, f->first);
}

static int ditem_by_total(const void *a, const void *b)
{
    double x = (*(ditem *const *)a)->total, y = (*(ditem *const *)b)->total;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Sorts every level by total and collects the totals (for the row limit). */
static int ditem_sort(ditem *d, double **totals, size_t *n, size_t *cap)
{
    sort_items(d->kids, (size_t)d->nkids, sizeof *d->kids, ditem_by_total);
    for (int i = 0; i < d->nkids; i++) {
        if (*n == *cap) {
            size_t c = *cap ? *cap * 2 : 64;
            double *t = realloc(*totals, c * sizeof *t);
            if (t == NULL)
                return -1;
            *totals = t;
            *cap = c;
        }
        (*totals)[(*n)++] = d->kids[i]->total;
        if (ditem_sort(d->kids[i], totals, n, cap) < 0)
            return -1;
    }
    return 0;
}

static int by_value_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* One row of the tree, in both versions. prefix holds the tree's drawing
 * (UTF-8, spaces included). */
typedef struct {
    tree *t;
    double cutoff; /* rows below this total are left out */
    report_buf *text, *html;
    int rows;
} tree_out;

static void tree_row(tree_out *o, const ditem *d, const char *prefix, size_t plen)
{
    tree *t = o->t;
    double share = t->grand > 0 ? d->total / t->grand : 0;
    const fn_info *f = d->n ? &t->fns[d->n->fn] : NULL;
    report_buf name = REPORT_BUF_INIT;
    if (f == NULL)
        report_buf_printf(&name, "[%d frame%s hidden]  %s", d->hidden, d->hidden == 1 ? "" : "s",
                          d->mods);
    else if (d->depth > 1)
        report_buf_printf(&name, "%s (x%d, recursive)", f->name, d->depth);
    else
        report_buf_puts(&name, f->name);
    report_buf loc = REPORT_BUF_INIT;
    if (f != NULL)
        location(&loc, f);
    const char *nm = name.data ? name.data : "", *lc = loc.data ? loc.data : "";

    report_buf_printf(o->text, "%.3f %3.0f%%  ", d->total, 100.0 * share);
    report_buf_append(o->text, prefix, plen);
    report_buf_puts(o->text, nm);
    if (loc.len)
        report_buf_printf(o->text, "  %s", lc);
    report_buf_puts(o->text, "\n");

    report_buf *h = o->html;
    report_buf_printf(h,
                      "<tr><td style=\"" REPORT_TD "\">%.3f</td><td style=\"" REPORT_TD
                      "\">%.0f%%</td><td style=\"" REPORT_TD_L "\">",
                      d->total, 100.0 * share);
    report_html_bar(h, f != NULL && !f->lib ? REPORT_ORANGE : REPORT_BLUE, 80.0 * share);
    report_buf_puts(h, "</td><td style=\"" REPORT_TD_L "\">");
    /* the drawing keeps its spaces: they become no-break spaces */
    for (size_t i = 0; i < plen; i++) {
        if (prefix[i] == ' ')
            report_buf_puts(h, "&nbsp;");
        else
            report_buf_append(h, prefix + i, 1);
    }
    if (f != NULL && !f->lib) {
        report_buf_puts(h, "<b>");
        report_buf_html(h, nm, name.len);
        report_buf_puts(h, "</b>");
    } else {
        report_buf_puts(h, "<span style=\"" REPORT_DIM "\">");
        report_buf_html(h, nm, name.len);
        report_buf_puts(h, "</span>");
    }
    if (f != NULL) {
        report_buf_puts(h, "&nbsp;&nbsp;<span style=\"" REPORT_DIM "\" title=\"");
        report_buf_html(h, f->file, strlen(f->file));
        report_buf_puts(h, "\">");
        report_buf_html(h, lc, loc.len);
        report_buf_puts(h, "</span>");
    }
    report_buf_puts(h, "</td></tr>\n");
    report_buf_free(&name);
    report_buf_free(&loc);
    o->rows++;
}

static void tree_rows(tree_out *o, const ditem *d, const char *prefix, size_t plen, int last,
                      int top)
{
    char here[2048];
    size_t hlen = 0;
    if (plen + 16 >= sizeof here)
        return;
    memcpy(here, prefix, plen);
    hlen = plen;
    if (!top) {
        const char *branch = last ? "\u2514\u2500 " : "\u251c\u2500 ";
        memcpy(here + hlen, branch, strlen(branch));
        hlen += strlen(branch);
    }
    tree_row(o, d, here, hlen);
    char sub[2048];
    size_t slen = plen;
    memcpy(sub, prefix, plen);
    if (!top) {
        const char *cont = last ? "   " : "\u2502  ";
        memcpy(sub + slen, cont, strlen(cont));
        slen += strlen(cont);
    }
    int shown = 0;
    while (shown < d->nkids && d->kids[shown]->total >= o->cutoff)
        shown++;
    for (int i = 0; i < shown; i++)
        tree_rows(o, d->kids[i], sub, slen, i == shown - 1, 0);
}

/* ---- the flame graph --------------------------------------------------------------- */

static void svg_escape(report_buf *b, const char *s)
{
    report_buf_html(b, s, strlen(s));
}

/* Fill colours: warm for cell and user code, cool for libraries, at a
 * lightness where dark text reads, on any page colour. */
static void svg_colour(report_buf *b, const fn_info *f)
{
    unsigned h = 2166136261u;
    for (const char *p = f->name; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    int vary = (int)(h % 30);
    if (f->lib)
        report_buf_printf(b, "hsl(%d,45%%,%d%%)", 200 + vary, 72 + (int)(h >> 8) % 10);
    else
        report_buf_printf(b, "hsl(%d,80%%,%d%%)", 15 + vary, 62 + (int)(h >> 8) % 12);
}

static int svg_depth(const tnode *n, double min, int depth)
{
    int best = depth;
    if (depth >= SVG_MAX_ROWS)
        return depth;
    for (int i = 0; i < n->nkids; i++)
        if (n->kids[i]->total >= min) {
            int d = svg_depth(n->kids[i], min, depth + 1);
            if (d > best)
                best = d;
        }
    return best;
}

static void svg_node(tree *t, const tnode *n, double x, int depth, double scale, report_buf *b)
{
    double w = n->total * scale;
    if (w < 0.5 || depth >= SVG_MAX_ROWS)
        return;
    const fn_info *f = &t->fns[n->fn];
    int y = depth * SVG_ROW;
    report_buf_printf(b,
                      "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" rx=\"2\" "
                      "stroke=\"#ffffff\" stroke-width=\"0.5\" fill=\"",
                      x, y, w, SVG_ROW - 1);
    svg_colour(b, f);
    report_buf_puts(b, "\"/>");
    int chars = (int)((w - 6) / 6.6);
    if (chars >= 3) {
        char label[256];
        int len = snprintf(label, sizeof label, "%s", f->name);
        if (len > chars) {
            label[chars > 2 ? chars - 2 : 0] = '\0';
            strcat(label, "..");
        }
        report_buf_printf(b, "<text x=\"%.1f\" y=\"%d\">", x + 3, y + SVG_ROW - 5);
        svg_escape(b, label);
        report_buf_puts(b, "</text>");
    }
    double cx = x;
    for (int i = 0; i < n->nkids; i++) {
        svg_node(t, n->kids[i], cx, depth + 1, scale, b);
        cx += n->kids[i]->total * scale;
    }
}

/* Appends an icicle of root (outermost call on top) as an <img>. Returns 0,
 * or -1 with an exception set. */
static int flame_img(tree *t, const tnode *root, report_buf *html)
{
    if (root->total <= 0 || root->nkids == 0)
        return 0;
    double scale = SVG_WIDTH / root->total;
    int rows = svg_depth(root, 0.5 / scale, 0);
    double h = rows * SVG_ROW;
    report_buf svg = REPORT_BUF_INIT;
    /* A picture of its own: dark text on light boxes, no background, so it
     * reads on light and dark pages alike. */
    report_buf_printf(&svg,
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                      "viewBox=\"0 0 %.0f %.0f\"><g font-family=\"DejaVu Sans Mono,Menlo,Consolas,"
                      "monospace\" font-size=\"11\" fill=\"#111111\">",
                      SVG_WIDTH, h, SVG_WIDTH, h);
    double x = 0;
    for (int i = 0; i < root->nkids; i++) {
        svg_node(t, root->kids[i], x, 0, scale, &svg);
        x += root->kids[i]->total * scale;
    }
    report_buf_puts(&svg, "</g></svg>\n");
    report_buf_puts(html, "<div style=\"" REPORT_DIM ";margin:6px 0 2px 0\">Flame graph: each "
                          "box is a function, as wide as its share of the samples; what it "
                          "calls sits below it. Orange: your code; blue: libraries.</div>\n");
    int rc = report_html_img_svg(html, &svg, SVG_WIDTH, h,
                                 "Flame graph (icicle): callers above callees, widths by "
                                 "sampled time; the call tree above has the figures");
    report_buf_free(&svg);
    return rc;
}

/* ---- line heat ---------------------------------------------------------------------- */

typedef struct {
    int fn;
    int first, last;
    double *secs; /* per line, first..last */
    double total;
} heat;

static int by_heat(const void *a, const void *b)
{
    double x = ((const heat *)a)->total, y = ((const heat *)b)->total;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Returns a new list of the source lines of filename, from linecache. */
static PyObject *source_lines(const char *filename)
{
    PyObject *lc = PyImport_ImportModule("linecache");
    if (lc == NULL)
        return NULL;
    PyObject *r = PyObject_CallMethod(lc, "getlines", "s", filename);
    Py_DECREF(lc);
    if (r != NULL && !PyList_Check(r)) {
        Py_DECREF(r);
        r = PyList_New(0);
    }
    return r;
}

static void strip_newline(const char **s, Py_ssize_t *n)
{
    while (*n > 0 && ((*s)[*n - 1] == '\n' || (*s)[*n - 1] == '\r'))
        (*n)--;
}

static int line_heat(tree *t, PyObject *prof, PyObject *stacks, report_buf *text, report_buf *html)
{
    PyObject *funcs = PyDict_GetItemString(prof, "functions"); /* borrowed */
    heat *hs = NULL;
    int nh = 0, rc = -1;
    int *slot = NULL;

    if (funcs == NULL || !PyDict_Check(funcs) || t->grand <= 0)
        return 0;
    slot = malloc((size_t)(t->nfns + 1) * sizeof *slot);
    hs = calloc((size_t)t->nfns + 1, sizeof *hs);
    if (slot == NULL || hs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < t->nfns; i++) {
        slot[i] = -1;
        const fn_info *f = &t->fns[i];
        if (f->cell < 0 && strcmp(f->file, "<sample>") != 0)
            continue;
        PyObject *key = Py_BuildValue("(ssi)", f->file, f->name, f->first);
        if (key == NULL)
            goto done;
        PyObject *range = PyDict_GetItemWithError(funcs, key);
        Py_DECREF(key);
        int first = f->first, last = f->first;
        if (range == NULL && PyErr_Occurred())
            goto done;
        if (range != NULL && !PyArg_ParseTuple(range, "ii", &first, &last))
            goto done;
        if (last < first || last - first > 100000)
            last = first;
        heat *h = &hs[nh];
        h->fn = i;
        h->first = first;
        h->last = last;
        h->secs = calloc((size_t)(last - first + 1), sizeof *h->secs);
        if (h->secs == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        slot[i] = nh++;
    }
    if (nh == 0) {
        rc = 0;
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(stacks); i++) {
        PyObject *row = PyList_GET_ITEM(stacks, i);
        PyObject *frames = PyTuple_GET_ITEM(row, 1);
        double secs = PyFloat_AsDouble(PyTuple_GET_ITEM(row, 3));
        Py_ssize_t nf = PyTuple_GET_SIZE(frames);
        for (Py_ssize_t k = 0; k < nf; k++) {
            PyObject *fr = PyTuple_GET_ITEM(frames, k);
            PyObject *key = PyTuple_GetSlice(fr, 0, 3);
            PyObject *id = key ? PyDict_GetItemWithError(t->fnids, key) : NULL;
            Py_XDECREF(key);
            if (id == NULL) {
                if (PyErr_Occurred())
                    goto done;
                continue;
            }
            int fn = (int)PyLong_AsLong(id), s = slot[fn];
            int line = (int)PyLong_AsLong(PyTuple_GET_ITEM(fr, 3));
            if (s < 0 || line < hs[s].first || line > hs[s].last)
                continue;
            /* once per stack: a recursive function's line counts once */
            int seen = 0;
            for (Py_ssize_t j = 0; j < k && !seen; j++) {
                PyObject *o = PyTuple_GET_ITEM(frames, j);
                seen = PyObject_RichCompareBool(PyTuple_GET_ITEM(o, 1), PyTuple_GET_ITEM(fr, 1),
                                                Py_EQ) == 1 &&
                       PyObject_RichCompareBool(PyTuple_GET_ITEM(o, 3), PyTuple_GET_ITEM(fr, 3),
                                                Py_EQ) == 1 &&
                       PyObject_RichCompareBool(PyTuple_GET_ITEM(o, 0), PyTuple_GET_ITEM(fr, 0),
                                                Py_EQ) == 1;
            }
            if (!seen)
                hs[s].secs[line - hs[s].first] += secs;
        }
    }
    for (int i = 0; i < nh; i++) {
        heat *h = &hs[i];
        for (int l = 0; l <= h->last - h->first; l++)
            if (h->secs[l] > h->total)
                h->total = h->secs[l];
    }
    sort_items(hs, (size_t)nh, sizeof *hs, by_heat);
    int shown = 0;
    for (int i = 0; i < nh && shown < HEAT_FUNCS; i++) {
        heat *h = &hs[i];
        const fn_info *f = &t->fns[h->fn];
        if (h->total < MIN_SHARE * t->grand)
            continue;
        PyObject *lines = source_lines(f->file);
        if (lines == NULL)
            goto done;
        shown++;
        int span = h->last - h->first + 1, sparse = span > HEAT_MAX_LINES;
        report_buf_printf(text, "\nLine heat: %s  ", f->name);
        location(text, f);
        report_buf_puts(text, "\n    share  seconds  line\n");
        report_buf loc = REPORT_BUF_INIT, esc = REPORT_BUF_INIT;
        location(&loc, f);
        report_buf_puts(&esc, "Line heat: <b>");
        report_buf_html(&esc, f->name, strlen(f->name));
        report_buf_puts(&esc, "</b> ");
        report_buf_html(&esc, loc.data ? loc.data : "", loc.len);
        report_html_head(html, "%s", esc.data ? esc.data : "");
        report_buf_free(&loc);
        report_buf_free(&esc);
        report_buf_puts(html,
                        "<table class=\"pyro-sample-heat\" style=\"" REPORT_TABLE "\"><tr>"
                        "<th style=\"" REPORT_TH "\">share</th><th style=\"" REPORT_TH_L
                        "\"></th><th style=\"" REPORT_TH "\">seconds</th><th style=\"" REPORT_TH
                        "\">line</th><th style=\"" REPORT_TH_L "\">code</th></tr>\n");
        for (int l = 0; l < span; l++) {
            double s = h->secs[l], share = s / t->grand;
            if (sparse && share < MIN_SHARE)
                continue;
            int lineno = h->first + l;
            const char *src = "";
            Py_ssize_t n = 0;
            if (lineno >= 1 && lineno <= PyList_GET_SIZE(lines)) {
                src = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(lines, lineno - 1), &n);
                if (src == NULL)
                    goto lines_error;
                strip_newline(&src, &n);
            }
            char prefix[64];
            int plen = s > 0 ? snprintf(prefix, sizeof prefix, "   %5.1f%%  %7.3f  %4d  ",
                                        100.0 * share, s, lineno)
                             : snprintf(prefix, sizeof prefix, "%18s  %4d  ", "", lineno);
            report_text_source(text, prefix, (size_t)plen, src, (size_t)n);
            report_buf_printf(html, "<tr%s><td style=\"" REPORT_TD "\">",
                              share >= 0.2 ? " style=\"" REPORT_SHADE_ORANGE "\"" : "");
            if (s > 0)
                report_buf_printf(html, "%.1f%%", 100.0 * share);
            report_buf_puts(html, "</td><td style=\"" REPORT_TD_L "\">");
            if (s > 0)
                report_html_bar(html, REPORT_ORANGE, 80.0 * share);
            report_buf_puts(html, "</td><td style=\"" REPORT_TD "\">");
            if (s > 0)
                report_buf_printf(html, "%.3f", s);
            report_buf_printf(
                html, "</td><td style=\"" REPORT_TD "\">%d</td><td style=\"" REPORT_TD_SRC "\">",
                lineno);
            report_buf_html(html, src, (size_t)n);
            report_buf_puts(html, "</td></tr>\n");
        }
        report_buf_puts(html, "</table>\n");
        Py_DECREF(lines);
        continue;
    lines_error:
        Py_DECREF(lines);
        goto done;
    }
    rc = 0;
done:
    if (hs != NULL)
        for (int i = 0; i < nh; i++)
            free(hs[i].secs);
    free(hs);
    free(slot);
    return rc;
}

/* ---- the report --------------------------------------------------------------------- */

int sample_render_report(PyObject *prof, const char *title, int rows, report_buf *text,
                         report_buf *html)
{
    tree t;
    int rc = -1;
    PyObject *stacks = PyDict_GetItemString(prof, "stacks"); /* borrowed */
    PyObject *mode = PyDict_GetItemString(prof, "mode");
    PyObject *dur = PyDict_GetItemString(prof, "duration");
    PyObject *nsamp = PyDict_GetItemString(prof, "samples");
    PyObject *ival = PyDict_GetItemString(prof, "interval");
    PyObject *errs = PyDict_GetItemString(prof, "errors");
    PyObject *trunc = PyDict_GetItemString(prof, "truncated");

    if (stacks == NULL || !PyList_Check(stacks) || mode == NULL || dur == NULL || nsamp == NULL ||
        ival == NULL) {
        PyErr_SetString(PyExc_TypeError, "%sample: not a profile");
        return -1;
    }
    if (tree_build(&t, stacks) < 0)
        goto done;
    const char *m = PyUnicode_AsUTF8(mode);
    if (m == NULL)
        goto done;
    char head[512];
    snprintf(head, sizeof head, "%s: %.3f s %s over %.3f s, %ld samples every %g ms", title,
             t.grand, strcmp(m, "cpu") == 0 ? "of CPU" : "sampled", PyFloat_AsDouble(dur),
             PyLong_AsLong(nsamp), PyFloat_AsDouble(ival) * 1000.0);
    report_buf_puts(text, head);
    report_buf_puts(text, "\n");
    report_html_open(html);
    report_buf esc = REPORT_BUF_INIT;
    report_buf_html(&esc, head, strlen(head));
    report_html_head(html, "%s", esc.data ? esc.data : "");
    report_buf_free(&esc);
    if (errs != NULL && PyLong_AsLong(errs) > 0)
        report_note(text, html, "(%ld frames changed while they were read and were skipped)",
                    PyLong_AsLong(errs));
    if (trunc == Py_True)
        report_note(text, html, "(the recording filled its table; later new stacks were dropped)");
    if (t.grand <= 0) {
        report_note(text, html, "%s",
                    strcmp(m, "cpu") == 0
                        ? "No CPU time was sampled: the statement waited, or ran for less than "
                          "an interval."
                        : "No samples: the statement ran for less than an interval (-i).");
        report_html_close(html);
        rc = 0;
        goto done;
    }
    for (int r = 0; r < t.nroots; r++) {
        tnode *root = t.roots[r];
        if (root->total < MIN_SHARE * t.grand)
            continue;
        ditem *d = condense(&t, root, 1);
        double *totals = NULL;
        size_t ntot = 0, cap = 0;
        if (d == NULL || ditem_sort(d, &totals, &ntot, &cap) < 0) {
            ditem_free(d);
            free(totals);
            PyErr_NoMemory();
            goto done;
        }
        sort_items(totals, ntot, sizeof *totals, by_value_desc);
        tree_out o = {&t, ntot > (size_t)rows ? totals[rows - 1] : 0.0, text, html, 0};
        free(totals);
        const char *label = PyUnicode_AsUTF8(PyList_GET_ITEM(t.labels, r));
        if (label == NULL) {
            ditem_free(d);
            goto done;
        }
        if (t.nroots > 1) {
            report_buf_printf(text, "\n%s: %.3f s\n", label, root->total);
            report_buf_puts(html, "<div style=\"margin:8px 0 2px 0;font-weight:600\">");
            report_buf_html(html, label, strlen(label));
            report_buf_printf(html, ": %.3f s</div>\n", root->total);
        } else {
            report_buf_puts(text, "\n");
        }
        report_buf_puts(html, "<table class=\"pyro-sample-tree\" style=\"" REPORT_TABLE "\">"
                              "<tr><th style=\"" REPORT_TH "\">seconds</th><th style=\"" REPORT_TH
                              "\">share</th><th style=\"" REPORT_TH_L
                              "\"></th><th style=\"" REPORT_TH_L "\">call tree</th></tr>\n");
        for (int i = 0; i < d->nkids && d->kids[i]->total >= o.cutoff; i++)
            tree_rows(&o, d->kids[i], "", 0, 1, 1);
        report_buf_puts(html, "</table>\n");
        char hint[160];
        snprintf(hint, sizeof hint,
                 "Library frames are folded unless hot; calls under 1%% are left out.%s",
                 (size_t)o.rows < ntot ? " -l N shows N rows." : "");
        report_html_footer(html, o.rows, (Py_ssize_t)ntot, "rows", hint);
        if ((size_t)o.rows < ntot)
            report_buf_printf(text, "(showing the top %d of %zu rows; -l N shows N)\n", o.rows,
                              ntot);
        if (root->self >= MIN_SHARE * t.grand)
            report_note(text, html, "%.3f s (%.0f%%) outside %s", root->self,
                        100.0 * root->self / t.grand,
                        PyDict_GetItemString(prof, "from_cell") == Py_True
                            ? "the cell's code (the shell's own work before and after it)"
                            : "any Python frame");
        ditem_free(d);
        if (flame_img(&t, root, html) < 0)
            goto done;
    }
    if (line_heat(&t, prof, stacks, text, html) < 0)
        goto done;
    report_html_close(html);
    rc = 0;
done:
    tree_free(&t);
    return rc;
}

/* ---- views ------------------------------------------------------------------------------- */

/* A frame of the event loop: asyncio's, or nest_asyncio's replacements of
 * asyncio.run and the loop's methods (jupyter_client applies it). */
static int is_asyncio(PyObject *frame)
{
    const char *f = PyUnicode_AsUTF8(PyTuple_GET_ITEM(frame, 0));
    size_t n = f ? strlen(f) : 0;
    return f != NULL && (strstr(f, "/asyncio/") != NULL ||
                         (n >= 16 && strcmp(f + n - 16, "/nest_asyncio.py") == 0));
}

PyObject *sample_render_async(PyObject *stacks)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(stacks); i++) {
        PyObject *row = PyList_GET_ITEM(stacks, i), *frames = PyTuple_GET_ITEM(row, 1);
        Py_ssize_t n = PyTuple_GET_SIZE(frames), loop = -1, coro = -1;
        for (Py_ssize_t k = 0; k < n; k++) {
            PyObject *f = PyTuple_GET_ITEM(frames, k);
            if (loop < 0 && is_asyncio(f))
                loop = k;
            if (loop >= 0 && PyTuple_GET_ITEM(f, 4) == Py_True && !is_asyncio(f)) {
                coro = k;
                break;
            }
        }
        PyObject *nf;
        if (loop < 0) {
            nf = Py_NewRef(frames);
        } else {
            /* the loop's frames give way to the task, named by its coroutine */
            PyObject *head = PyTuple_GetSlice(frames, 0, loop);
            PyObject *pseudo =
                coro >= 0 ? Py_BuildValue("(sNiiO)", "<async>",
                                          PyUnicode_FromFormat(
                                              "[task] %U",
                                              PyTuple_GET_ITEM(PyTuple_GET_ITEM(frames, coro), 1)),
                                          0, 0, Py_False)
                          : Py_BuildValue("(ssiiO)", "<async>", "[await]", 0, 0, Py_False);
            PyObject *tail = coro >= 0 ? PyTuple_GetSlice(frames, coro, n) : PyTuple_New(0);
            PyObject *mid = pseudo ? PyTuple_Pack(1, pseudo) : NULL;
            PyObject *a = head && mid ? PySequence_Concat(head, mid) : NULL;
            nf = a && tail ? PySequence_Concat(a, tail) : NULL;
            Py_XDECREF(head);
            Py_XDECREF(pseudo);
            Py_XDECREF(tail);
            Py_XDECREF(mid);
            Py_XDECREF(a);
        }
        PyObject *r = nf ? Py_BuildValue("(ONOO)", PyTuple_GET_ITEM(row, 0), nf,
                                         PyTuple_GET_ITEM(row, 2), PyTuple_GET_ITEM(row, 3))
                         : NULL;
        if (r == NULL || PyList_Append(out, r) < 0) {
            Py_XDECREF(r);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(r);
    }
    return out;
}

/* The index of the outermost cell frame of frames, or -1 with none (or
 * with an exception set, which the caller checks). */
static Py_ssize_t outermost_cell(PyObject *frames)
{
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(frames); k++) {
        const char *f = PyUnicode_AsUTF8(PyTuple_GET_ITEM(PyTuple_GET_ITEM(frames, k), 0));
        if (f == NULL)
            return -1;
        if (cell_number(f) >= 0)
            return k;
    }
    return -1;
}

PyObject *sample_render_from_cell(PyObject *stacks, int *found)
{
    *found = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(stacks) && !*found; i++) {
        *found = outermost_cell(PyTuple_GET_ITEM(PyList_GET_ITEM(stacks, i), 1)) >= 0;
        if (PyErr_Occurred())
            return NULL;
    }
    if (!*found) /* a host that does not name its cells: nothing to cut */
        return Py_NewRef(stacks);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(stacks); i++) {
        PyObject *row = PyList_GET_ITEM(stacks, i), *frames = PyTuple_GET_ITEM(row, 1);
        Py_ssize_t n = PyTuple_GET_SIZE(frames), at = outermost_cell(frames);
        if (PyErr_Occurred())
            goto error;
        /* A sample with no cell frame fell in the shell's own work before
         * or after the cell (IPython's run_cell, compiling, display): its
         * frames are not the cell's and are left out. */
        if (at < 0)
            at = n;
        PyObject *r =
            Py_BuildValue("(ONOO)", PyTuple_GET_ITEM(row, 0), PyTuple_GetSlice(frames, at, n),
                          PyTuple_GET_ITEM(row, 2), PyTuple_GET_ITEM(row, 3));
        if (r == NULL || PyList_Append(out, r) < 0) {
            Py_XDECREF(r);
            goto error;
        }
        Py_DECREF(r);
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* ---- exports ------------------------------------------------------------------------------ */

/* Appends s with the characters flamegraph.pl splits on (';' between
 * frames, and the line's last space before the count) made harmless. */
static void collapsed_name(report_buf *b, const char *s)
{
    for (; *s; s++) {
        char c = *s == ';' ? ':' : (*s == '\n' || *s == '\r') ? ' ' : *s;
        report_buf_append(b, &c, 1);
    }
}

int sample_render_collapsed(PyObject *prof, report_buf *out)
{
    PyObject *stacks = PyDict_GetItemString(prof, "stacks"), *threads = NULL, *counts = NULL;
    PyObject *keys = NULL;
    int rc = -1;
    if (stacks == NULL || !PyList_Check(stacks)) {
        PyErr_SetString(PyExc_TypeError, "%sample: not a profile");
        return -1;
    }
    threads = PySet_New(NULL);
    counts = PyDict_New();
    if (threads == NULL || counts == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(stacks); i++)
        if (PySet_Add(threads, PyTuple_GET_ITEM(PyList_GET_ITEM(stacks, i), 0)) < 0)
            goto done;
    int several = PySet_GET_SIZE(threads) > 1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(stacks); i++) {
        PyObject *row = PyList_GET_ITEM(stacks, i), *frames = PyTuple_GET_ITEM(row, 1);
        unsigned long samples = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(row, 2));
        if (samples == 0 || PyTuple_GET_SIZE(frames) == 0)
            continue;
        report_buf line = REPORT_BUF_INIT;
        if (several) {
            const char *l = PyUnicode_AsUTF8(PyTuple_GET_ITEM(row, 0));
            collapsed_name(&line, l ? l : "thread");
        }
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(frames); k++) {
            PyObject *f = PyTuple_GET_ITEM(frames, k);
            const char *file = PyUnicode_AsUTF8(PyTuple_GET_ITEM(f, 0));
            const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(f, 1));
            if (file == NULL || name == NULL) {
                report_buf_free(&line);
                goto done;
            }
            if (line.len)
                report_buf_puts(&line, ";");
            collapsed_name(&line, name);
            report_buf_puts(&line, " (");
            collapsed_name(&line, file);
            report_buf_printf(&line, ":%ld)", PyLong_AsLong(PyTuple_GET_ITEM(f, 3)));
        }
        PyObject *key = report_buf_to_str(&line);
        report_buf_free(&line);
        if (key == NULL)
            goto done;
        PyObject *have = PyDict_GetItemWithError(counts, key);
        unsigned long total = samples + (have ? PyLong_AsUnsignedLong(have) : 0);
        PyObject *v = PyErr_Occurred() ? NULL : PyLong_FromUnsignedLong(total);
        int bad = v == NULL || PyDict_SetItem(counts, key, v) < 0;
        Py_DECREF(key);
        Py_XDECREF(v);
        if (bad)
            goto done;
    }
    keys = PyDict_Keys(counts);
    if (keys == NULL || PyList_Sort(keys) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        const char *s = PyUnicode_AsUTF8(k);
        if (s == NULL)
            goto done;
        report_buf_printf(out, "%s %lu\n", s, PyLong_AsUnsignedLong(PyDict_GetItem(counts, k)));
    }
    rc = 0;
done:
    Py_XDECREF(threads);
    Py_XDECREF(counts);
    Py_XDECREF(keys);
    return rc;
}

PyObject *sample_render_speedscope(PyObject *prof)
{
    PyObject *stacks = PyDict_GetItemString(prof, "stacks");
    PyObject *frames = NULL, *ids = NULL, *profiles = NULL, *byname = NULL, *doc = NULL;
    PyObject *json = NULL, *out = NULL;
    if (stacks == NULL || !PyList_Check(stacks)) {
        PyErr_SetString(PyExc_TypeError, "%sample: not a profile");
        return NULL;
    }
    frames = PyList_New(0);
    ids = PyDict_New();
    profiles = PyList_New(0);
    byname = PyDict_New();
    if (!frames || !ids || !profiles || !byname)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(stacks); i++) {
        PyObject *row = PyList_GET_ITEM(stacks, i), *fr = PyTuple_GET_ITEM(row, 1);
        PyObject *label = PyTuple_GET_ITEM(row, 0);
        PyObject *p = PyDict_GetItemWithError(byname, label);
        if (p == NULL) {
            if (PyErr_Occurred())
                goto done;
            p = Py_BuildValue("{s:s,s:O,s:s,s:i,s:d,s:[],s:[]}", "type", "sampled", "name", label,
                              "unit", "seconds", "startValue", 0, "endValue", 0.0, "samples",
                              "weights");
            if (p == NULL || PyDict_SetItem(byname, label, p) < 0 ||
                PyList_Append(profiles, p) < 0) {
                Py_XDECREF(p);
                goto done;
            }
            Py_DECREF(p);
        }
        PyObject *idx = PyList_New(PyTuple_GET_SIZE(fr));
        if (idx == NULL)
            goto done;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(fr); k++) {
            PyObject *f = PyTuple_GET_ITEM(fr, k), *key = PyTuple_GetSlice(f, 0, 3);
            PyObject *id = key ? PyDict_GetItemWithError(ids, key) : NULL;
            if (id == NULL && !PyErr_Occurred() && key != NULL) {
                PyObject *d = Py_BuildValue("{s:O,s:O,s:O}", "name", PyTuple_GET_ITEM(f, 1), "file",
                                            PyTuple_GET_ITEM(f, 0), "line", PyTuple_GET_ITEM(f, 2));
                PyObject *n = PyLong_FromSsize_t(PyList_GET_SIZE(frames));
                if (d && n && PyList_Append(frames, d) == 0 && PyDict_SetItem(ids, key, n) == 0)
                    id = n;
                Py_XDECREF(d);
                Py_XDECREF(n);
            }
            Py_XDECREF(key);
            if (id == NULL) {
                Py_DECREF(idx);
                goto done;
            }
            PyList_SET_ITEM(idx, k, Py_NewRef(id));
        }
        PyObject *samples = PyDict_GetItemString(p, "samples");
        PyObject *weights = PyDict_GetItemString(p, "weights");
        PyObject *end = PyDict_GetItemString(p, "endValue");
        double secs = PyFloat_AsDouble(PyTuple_GET_ITEM(row, 3));
        PyObject *nend = PyFloat_FromDouble(PyFloat_AsDouble(end) + secs);
        int bad = PyList_Append(samples, idx) < 0 ||
                  PyList_Append(weights, PyTuple_GET_ITEM(row, 3)) < 0 || nend == NULL ||
                  PyDict_SetItemString(p, "endValue", nend) < 0;
        Py_DECREF(idx);
        Py_XDECREF(nend);
        if (bad)
            goto done;
    }
    doc = Py_BuildValue("{s:s,s:{s:O},s:O,s:s,s:s,s:i}", "$schema",
                        "https://www.speedscope.app/file-format-schema.json", "shared", "frames",
                        frames, "profiles", profiles, "name", "%sample", "exporter",
                        "pyrometer " PYROMETER_VERSION, "activeProfileIndex", 0);
    json = PyImport_ImportModule("json");
    if (doc == NULL || json == NULL)
        goto done;
    out = PyObject_CallMethod(json, "dumps", "(O)", doc);
done:
    Py_XDECREF(frames);
    Py_XDECREF(ids);
    Py_XDECREF(profiles);
    Py_XDECREF(byname);
    Py_XDECREF(doc);
    Py_XDECREF(json);
    return out;
}
