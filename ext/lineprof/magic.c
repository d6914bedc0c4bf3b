/* lineprof/magic.c - the %lprun magic and pyrometer.LineStats.
 *
 * Owns the option spec (options.c parses it), turning -f/-m targets into
 * code objects, running the statement under the line profiler (lineprof/engine.c),
 * the line_profiler-compatible pickle (-D), the -T file and the -r stats
 * object. The text and HTML are lineprof/render.c's.
 */
#include "lineprof/lineprof.h"
#include "lineprof/render.h"
#include "options.h"
#include "report.h"
#include "targets.h"

#include "structmember.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define USAGE                                                                                      \
    "Usage: %lprun [-f func]... [-m module]... [-u unit] [-z|-s] [-T file] [-D file] [-r] "        \
    "statement"

static PyObject *UsageError;         /* owned: pyrometer.UsageError */
static PyTypeObject *LineStats_Type; /* owned */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const options_magic lprun_magic_spec;

/* Sets pyrometer.UsageError with "%lprun: <message>\n<usage>". Returns -1. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    options_raise_v(UsageError, &lprun_magic_spec, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- targets ------------------------------------------------------------------ */

/* Adds code and, recursively, the named functions defined inside it (not
 * lambdas or comprehensions). Returns the number of code objects found
 * (including ones already there), or -1. */
static int add_code_tree(PyObject *prof, PyObject *code, PyObject *globals, int depth)
{
    int added = lineprof_add_code(prof, code, globals);
    if (added < 0)
        return -1;
    int n = 1;
    if (depth > 20)
        return n;
    PyObject *consts = ((PyCodeObject *)code)->co_consts;
    for (Py_ssize_t i = 0; consts && i < PyTuple_GET_SIZE(consts); i++) {
        PyObject *c = PyTuple_GET_ITEM(consts, i);
        if (!PyCode_Check(c))
            continue;
        const char *name = PyUnicode_AsUTF8(((PyCodeObject *)c)->co_name);
        if (name == NULL)
            return -1;
        if (name[0] == '<')
            continue;
        int m = add_code_tree(prof, c, globals, depth + 1);
        if (m < 0)
            return -1;
        n += m;
    }
    return n;
}

static int add_target(PyObject *prof, PyObject *obj, const char *what, int depth);

/* Adds every function, method and property accessor defined in a class body.
 * Returns the number of code objects added, or -1. */
static int add_class(PyObject *prof, PyObject *cls, const char *what, int depth)
{
    PyObject *dict = PyObject_GetAttrString(cls, "__dict__");
    if (dict == NULL)
        return -1;
    PyObject *values = PyMapping_Values(dict);
    Py_DECREF(dict);
    if (values == NULL)
        return -1;
    int total = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(values); i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (PyFunction_Check(v) || PyObject_TypeCheck(v, &PyClassMethod_Type) ||
            PyObject_TypeCheck(v, &PyStaticMethod_Type) ||
            PyObject_TypeCheck(v, &PyProperty_Type)) {
            int n = add_target(prof, v, what, depth + 1);
            if (n < 0) {
                /* A member we cannot profile (e.g. a wrapped builtin) is skipped. */
                if (!PyErr_ExceptionMatches(UsageError)) {
                    Py_DECREF(values);
                    return -1;
                }
                PyErr_Clear();
                continue;
            }
            total += n;
        }
    }
    Py_DECREF(values);
    return total;
}

/* Adds the functions and classes defined in a module (not those it imports). */
static int add_module(PyObject *prof, PyObject *mod, const char *what, int depth)
{
    PyObject *dict = PyModule_GetDict(mod); /* borrowed */
    PyObject *modname = PyModule_GetNameObject(mod);
    if (dict == NULL || modname == NULL)
        return -1;
    PyObject *items = PyDict_Values(dict);
    if (items == NULL) {
        Py_DECREF(modname);
        return -1;
    }
    int total = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *v = PyList_GET_ITEM(items, i);
        if (!PyFunction_Check(v) && !PyType_Check(v))
            continue;
        PyObject *vm = PyObject_GetAttrString(v, "__module__");
        if (vm == NULL)
            PyErr_Clear();
        int same = vm != NULL && PyUnicode_Check(vm) && PyUnicode_Compare(vm, modname) == 0;
        Py_XDECREF(vm);
        if (!same)
            continue;
        int n = PyType_Check(v) ? add_class(prof, v, what, depth + 1)
                                : add_target(prof, v, what, depth + 1);
        if (n < 0) {
            if (!PyErr_ExceptionMatches(UsageError)) {
                total = -1;
                break;
            }
            PyErr_Clear();
            continue;
        }
        total += n;
    }
    Py_DECREF(items);
    Py_DECREF(modname);
    return total;
}

/* Returns the number of code objects added for obj (>= 0), or -1. */
static int add_target(PyObject *prof, PyObject *obj, const char *what, int depth)
{
    if (depth > 50)
        return usage_error("-f %s: too deeply nested", what);
    if (PyCode_Check(obj))
        return add_code_tree(prof, obj, NULL, 0);
    if (PyFunction_Check(obj)) {
        PyObject *real = targets_unwrap(obj);
        int n;
        if (real != obj && !PyFunction_Check(real))
            n = add_target(prof, real, what, depth + 1);
        else
            n = add_code_tree(prof, PyFunction_GET_CODE(real), PyFunction_GET_GLOBALS(real), 0);
        Py_DECREF(real);
        return n;
    }
    if (PyMethod_Check(obj))
        return add_target(prof, PyMethod_GET_FUNCTION(obj), what, depth + 1);
    if (PyObject_TypeCheck(obj, &PyClassMethod_Type) ||
        PyObject_TypeCheck(obj, &PyStaticMethod_Type)) {
        PyObject *f = PyObject_GetAttrString(obj, "__func__");
        if (f == NULL)
            return -1;
        int n = add_target(prof, f, what, depth + 1);
        Py_DECREF(f);
        return n;
    }
    if (PyObject_TypeCheck(obj, &PyProperty_Type)) {
        static const char *const parts[] = {"fget", "fset", "fdel"};
        int total = 0;
        for (int i = 0; i < 3; i++) {
            PyObject *f = PyObject_GetAttrString(obj, parts[i]);
            if (f == NULL)
                return -1;
            int n = f == Py_None ? 0 : add_target(prof, f, what, depth + 1);
            Py_DECREF(f);
            if (n < 0)
                return -1;
            total += n;
        }
        if (total == 0)
            return usage_error("-f %s: this property has no Python getter, setter or deleter",
                               what);
        return total;
    }
    if (PyType_Check(obj)) {
        int n = add_class(prof, obj, what, depth);
        if (n == 0)
            return usage_error("-f %s: class %s defines no Python functions to profile; "
                               "give one of its methods instead, e.g. -f %s.method",
                               what, ((PyTypeObject *)obj)->tp_name, what);
        return n;
    }
    if (PyModule_Check(obj)) {
        int n = add_module(prof, obj, what, depth);
        if (n == 0)
            return usage_error("%s: the module defines no Python functions to profile", what);
        return n;
    }
    /* A generator, coroutine or async generator object: the code it runs. */
    if (PyGen_Check(obj) || PyCoro_CheckExact(obj) || PyAsyncGen_CheckExact(obj)) {
        const char *attr = PyGen_Check(obj)         ? "gi_code"
                           : PyCoro_CheckExact(obj) ? "cr_code"
                                                    : "ag_code";
        PyObject *code = PyObject_GetAttrString(obj, attr);
        if (code == NULL)
            return -1;
        int n = PyCode_Check(code) ? add_code_tree(prof, code, NULL, 0) : 0;
        Py_DECREF(code);
        return n;
    }
    /* functools.partial and friends: a .func that is callable. */
    PyObject *inner = NULL;
    const char *tname = Py_TYPE(obj)->tp_name;
    if (strcmp(tname, "functools.partial") == 0 || strcmp(tname, "functools.partialmethod") == 0) {
        inner = PyObject_GetAttrString(obj, "func");
        if (inner == NULL)
            return -1;
        int n = add_target(prof, inner, what, depth + 1);
        Py_DECREF(inner);
        return n;
    }
    if (PyCFunction_Check(obj) || strcmp(tname, "method_descriptor") == 0 ||
        strcmp(tname, "wrapper_descriptor") == 0 || strcmp(tname, "method-wrapper") == 0 ||
        strcmp(tname, "builtin_function_or_method") == 0 ||
        strcmp(tname, "classmethod_descriptor") == 0)
        return usage_error(
            "-f %s: that is a built-in (%s), with no Python lines to profile; "
            "give the Python function that calls it instead, e.g. %%lprun -f caller caller()",
            what, tname);
    /* An instance with a Python __call__. */
    if (PyCallable_Check(obj) && !PyType_Check(obj)) {
        PyObject *call = PyObject_GetAttrString((PyObject *)Py_TYPE(obj), "__call__");
        if (call == NULL)
            PyErr_Clear();
        else if (PyFunction_Check(call)) {
            int n = add_target(prof, call, what, depth + 1);
            Py_DECREF(call);
            return n;
        }
        Py_XDECREF(call);
    }
    char hint[512];
    if (targets_wrapped_hint(obj, what, hint, sizeof hint))
        return usage_error("-f %s: that is %s", what, hint);
    return usage_error(
        "-f %s: that is of type %s, not a function; -f takes a function, method, property, "
        "class or module, e.g. %%lprun -f f f(10)",
        what, tname);
}

int lprun_add_target(PyObject *prof, PyObject *target, const char *what)
{
    int n = add_target(prof, target, what, 0);
    if (n == 0)
        return usage_error("-f %s: nothing to profile there", what);
    return n;
}

/* ---- option parsing ----------------------------------------------------------- */

typedef struct {
    PyObject *funcs;     /* owned list of str: the -f expressions */
    PyObject *mods;      /* owned list of str: the -m module names */
    double unit;         /* -u, or 0 for the timer's unit */
    int strip;           /* -z / -s */
    int ret;             /* -r */
    PyObject *text_file; /* owned str or NULL: -T */
    PyObject *dump_file; /* owned str or NULL: -D */
    PyObject *stmt;      /* owned str: what to run */
} lp_opts;

static void opts_clear(lp_opts *o)
{
    Py_CLEAR(o->funcs);
    Py_CLEAR(o->mods);
    Py_CLEAR(o->text_file);
    Py_CLEAR(o->dump_file);
    Py_CLEAR(o->stmt);
}

enum { LO_F, LO_M, LO_U, LO_Z, LO_S, LO_T, LO_D, LO_R };

static const options_spec lprun_specs[] = {
    [LO_F] = {'f', NULL, OPTIONS_EXPR, 1, .needs = "a function", .example = "%lprun -f f f(10)",
              .meta = "FUNC",
              .help = "profile this function: an expression in the user namespace (a function, "
                      "method, property, class, closure or functools.wraps-decorated function)"},
    [LO_M] = {'m', NULL, OPTIONS_STR, 1, .example = "-m mypkg.mymod", .meta = "MODULE",
              .help = "profile every function of this module"},
    [LO_U] = {'u', NULL, OPTIONS_FLOAT, 0, 0.0, 1, .example = "-u 1e-3",
              .bad = "-u takes a time unit in seconds, such as -u 1e-3 for milliseconds; got %s",
              .meta = "UNIT", .help = "show times in this unit, in seconds (-u 1e-3: ms)"},
    [LO_Z] = {'z', NULL, OPTIONS_FLAG, .help = "leave out functions that never ran"},
    [LO_S] = {'s', NULL, OPTIONS_FLAG, .help = "the same as -z"},
    [LO_T] = {'T', NULL, OPTIONS_STR, .meta = "FILE", .help = "also write the text report to FILE"},
    [LO_D] = {'D', NULL, OPTIONS_STR, .meta = "FILE",
              .help = "write a dump that python3 -m line_profiler reads"},
    [LO_R] = {'r', NULL, OPTIONS_FLAG,
              .help = "return a pyrometer.LineStats (.timings and .unit as line_profiler's)"},
};

static const options_magic lprun_magic_spec = {
    "%lprun",
    USAGE,
    lprun_specs,
    sizeof lprun_specs / sizeof lprun_specs[0],
    0,
    .forms = "%%lprun [options]   (the cell body is the statement)",
    .summary = "Profile chosen functions line by line: hits and time per line.",
    .details = "Runs the statement in the user namespace with pyrometer's native line\n"
               "profiler on the -f functions (and -m modules); works on functions defined\n"
               "in notebook cells, with no decorator. Each line's time counts once, also\n"
               "in recursion; a generator keeps charging the line it is suspended on.",
    .example = "  %lprun -f fib fib(20)\n"
               "  %lprun -f Model.fit -u 1e-3 Model().fit(data)",
};

/* Parses the magic's line (and cell, for %%lprun). Returns 0, or -1 with an
 * exception set; o is filled on success and must be cleared by the caller. */
static int parse_opts(PyObject *module, PyObject *line, PyObject *cell, lp_opts *o)
{
    options_parsed op = OPTIONS_PARSED_INIT;
    int rc = -1;
    const char *s = PyUnicode_AsUTF8(line);

    memset(o, 0, sizeof *o);
    if (s == NULL || options_parse(module, &lprun_magic_spec, s, &op) < 0)
        goto done;
    o->funcs = op.values[LO_F] ? Py_NewRef(op.values[LO_F]) : PyList_New(0);
    o->mods = op.values[LO_M] ? Py_NewRef(op.values[LO_M]) : PyList_New(0);
    if (o->funcs == NULL || o->mods == NULL)
        goto done;
    o->unit = options_double(&op, LO_U, 0.0);
    o->strip = options_given(&op, LO_Z) || options_given(&op, LO_S);
    o->ret = options_given(&op, LO_R);
    o->text_file = Py_XNewRef(options_last(&op, LO_T));
    o->dump_file = Py_XNewRef(options_last(&op, LO_D));
    /* The statement: the rest of the line, or the cell body. */
    size_t end = strlen(op.rest);
    while (end > 0 && isspace((unsigned char)op.rest[end - 1]))
        end--;
    if (cell != NULL && cell != Py_None) {
        if (end > 0) {
            usage_error("%%%%lprun takes the statement from the cell body; "
                        "the line has only options: %%%%lprun -f f");
            goto done;
        }
        o->stmt = Py_NewRef(cell);
    } else {
        o->stmt = PyUnicode_FromStringAndSize(op.rest, (Py_ssize_t)end);
        if (o->stmt == NULL)
            goto done;
    }
    rc = 0;
done:
    options_clear(&op);
    return rc;
}

/* If expr (a -f value) is a call such as f(10), returns a new str with the
 * source of what is called ("f"); else returns NULL with no exception set.
 * Returns NULL with an exception set only on a real failure. */
static PyObject *called_func_src(PyObject *expr)
{
    PyObject *ast = NULL, *tree = NULL, *body = NULL, *func = NULL, *src = NULL;
    const char *e = PyUnicode_AsUTF8(expr);

    if (e == NULL)
        return NULL;
    tree = Py_CompileStringExFlags(e, "<lprun -f>", Py_eval_input,
                                   &(PyCompilerFlags){PyCF_ONLY_AST, 0}, -1);
    if (tree == NULL) {
        PyErr_Clear(); /* a syntax error shows up when it is evaluated */
        return NULL;
    }
    body = PyObject_GetAttrString(tree, "body");
    if (body == NULL || strcmp(Py_TYPE(body)->tp_name, "Call") != 0)
        goto done;
    func = PyObject_GetAttrString(body, "func");
    ast = lineprof_import("ast");
    if (func == NULL || ast == NULL)
        goto done;
    src = PyObject_CallMethod(ast, "unparse", "(O)", func);
done:
    Py_XDECREF(ast);
    Py_XDECREF(tree);
    Py_XDECREF(body);
    Py_XDECREF(func);
    return src;
}

/* The error for a -f value that is a call (the forgotten `%lprun -f f(10)`),
 * given the callee's source; replaces any pending exception. Returns -1. */
static int call_error(PyObject *expr, PyObject *func_src, PyObject *stmt, const char *why)
{
    PyErr_Clear();
    const char *e = PyUnicode_AsUTF8(expr);
    const char *fs = PyUnicode_AsUTF8(func_src);
    const char *st = PyUnicode_AsUTF8(stmt);
    if (e == NULL || fs == NULL || st == NULL)
        return -1;
    return usage_error(
        "-f %s: that is a call%s; -f takes the function itself, and the statement to "
        "run comes after the options. Write: %%lprun -f %s %s",
        e, why, fs, st[0] ? st : e);
}

/* Evaluates a -f expression in ns without touching ns. New reference, or NULL
 * with UsageError set. */
static PyObject *eval_target(PyObject *expr, PyObject *ns)
{
    const char *e = PyUnicode_AsUTF8(expr);
    if (e == NULL)
        return NULL;
    PyObject *code = Py_CompileString(e, "<lprun -f>", Py_eval_input);
    PyObject *v = code ? PyEval_EvalCode(code, ns, ns) : NULL;
    Py_XDECREF(code);
    if (v != NULL)
        return v;
    char why[512];
    options_take_error(why, sizeof why);
    usage_error("-f %s: could not evaluate it in the user namespace (%s); -f takes a function "
                "defined there, e.g. %%lprun -f f f(10)",
                e, why);
    return NULL;
}

/* ---- pyrometer.LineStats ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *timings; /* owned dict: (filename, first_lineno, name) -> [(lineno, nhits, time)] */
    double unit;       /* seconds per time unit: 1e-9 */
    PyObject *text;    /* owned str */
    PyObject *html;    /* owned str */
    PyObject *dict;    /* owned, may be NULL: instance __dict__ */
} LineStats;

/* Returns a new timings dict in line_profiler's layout, or NULL. */
static PyObject *timings_new(lprun_report *rep)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < rep->n; i++) {
        lprun_fn *f = &rep->fns[i];
        PyObject *list = PyList_New(0);
        PyObject *key = Py_BuildValue("(OiO)", f->filename, f->r.first_line, f->name);
        if (list == NULL || key == NULL || PyDict_SetItem(d, key, list) < 0) {
            Py_XDECREF(list);
            Py_XDECREF(key);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(list); /* d holds it */
        for (int k = 0; k < f->r.nlines; k++) {
            if (f->r.hits[k] == 0)
                continue;
            PyObject *e = Py_BuildValue("(iKL)", f->r.first_line + k,
                                        (unsigned long long)f->r.hits[k], (long long)f->r.ns[k]);
            if (e == NULL || PyList_Append(list, e) < 0) {
                Py_XDECREF(e);
                Py_DECREF(d);
                return NULL;
            }
            Py_DECREF(e);
        }
    }
    return d;
}

/* Returns a new LineStats from rep (rendered), or NULL. */
static PyObject *stats_from_report(lprun_report *rep, const report_buf *text,
                                   const report_buf *html)
{
    LineStats *st = PyObject_GC_New(LineStats, LineStats_Type);
    if (st == NULL)
        return NULL;
    st->unit = 1e-9;
    st->dict = NULL;
    st->timings = timings_new(rep);
    st->text = report_buf_to_str(text);
    st->html = report_buf_to_str(html);
    PyObject_GC_Track(st);
    if (st->timings == NULL || st->text == NULL || st->html == NULL) {
        Py_DECREF(st);
        return NULL;
    }
    return (PyObject *)st;
}

PyObject *lprun_stats_new(PyObject *prof)
{
    lprun_report rep = {0};
    report_buf text = REPORT_BUF_INIT, html = REPORT_BUF_INIT;
    PyObject *st = NULL;

    rep.unit = 1e-9;
    rep.wall = -1;
    if (lprun_report_gather(prof, &rep) < 0)
        goto done;
    lprun_render_text(&rep, &text, 0);
    lprun_render_html(&rep, &html);
    report_html_close(&html);
    st = stats_from_report(&rep, &text, &html);
done:
    lprun_report_clear(&rep);
    report_buf_free(&text);
    report_buf_free(&html);
    return st;
}

/* Writes timings/unit as a pickle that line_profiler's load_stats() reads as
 * its own LineStats (line_profiler._line_profiler.LineStats), without
 * importing line_profiler: a NEWOBJ of that class, then BUILD with the state
 * dict pickled by the standard pickler. Returns 0, or -1 with an exception. */
static int write_dump(PyObject *timings, double unit, PyObject *filename)
{
    static const char head[] = "\x80\x02"
                               "cline_profiler._line_profiler\nLineStats\n"
                               ")\x81";
    PyObject *pickle = NULL, *state = NULL, *body = NULL, *path = NULL;
    FILE *fp = NULL;
    int rc = -1;

    pickle = lineprof_import("pickle");
    if (pickle == NULL)
        goto done;
    state = Py_BuildValue("{s:O,s:d}", "timings", timings, "unit", unit);
    if (state == NULL)
        goto done;
    body = PyObject_CallMethod(pickle, "dumps", "Oi", state, 2);
    if (body == NULL)
        goto done;
    char *bs;
    Py_ssize_t blen;
    if (PyBytes_AsStringAndSize(body, &bs, &blen) < 0)
        goto done;
    /* body is PROTO 2 (2 bytes) ... STOP (1 byte): keep what is between. */
    if (blen < 3 || (unsigned char)bs[0] != 0x80 || bs[blen - 1] != '.') {
        PyErr_SetString(PyExc_RuntimeError, "unexpected pickle layout");
        goto done;
    }
    if (!PyUnicode_FSConverter(filename, &path))
        goto done;
    fp = fopen(PyBytes_AS_STRING(path), "wb");
    if (fp == NULL) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, filename);
        goto done;
    }
    if (fwrite(head, 1, sizeof head - 1, fp) != sizeof head - 1 ||
        fwrite(bs + 2, 1, (size_t)blen - 3, fp) != (size_t)blen - 3 ||
        fwrite("b.", 1, 2, fp) != 2) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, filename);
        goto done;
    }
    if (fclose(fp) != 0) {
        fp = NULL;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, filename);
        goto done;
    }
    fp = NULL;
    rc = 0;
done:
    if (fp != NULL)
        fclose(fp);
    Py_XDECREF(pickle);
    Py_XDECREF(state);
    Py_XDECREF(body);
    Py_XDECREF(path);
    return rc;
}

static int ls_traverse(LineStats *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->timings);
    Py_VISIT(self->dict);
    return 0;
}

static int ls_clear(LineStats *self)
{
    Py_CLEAR(self->timings);
    Py_CLEAR(self->text);
    Py_CLEAR(self->html);
    Py_CLEAR(self->dict);
    return 0;
}

static void ls_dealloc(LineStats *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ls_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *ls_dump(LineStats *self, PyObject *filename)
{
    if (write_dump(self->timings, self->unit, filename) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *ls_str(LineStats *self)
{
    return Py_NewRef(self->text);
}

static PyObject *ls_repr(LineStats *self)
{
    Py_ssize_t n = PyDict_GET_SIZE(self->timings);
    return PyUnicode_FromFormat("<pyrometer.LineStats: %zd function%s; print() it for the table>",
                                n, n == 1 ? "" : "s");
}

static PyMethodDef ls_methods[] = {
    {"dump", (PyCFunction)ls_dump, METH_O,
     "dump(filename)\n--\n\nWrite the stats as a pickle that `python3 -m line_profiler FILE` "
     "reads."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ls_members[] = {
    {"timings", T_OBJECT, offsetof(LineStats, timings), READONLY,
     "{(filename, first_lineno, name): [(lineno, hits, time), ...]}, as in line_profiler."},
    {"unit", T_DOUBLE, offsetof(LineStats, unit), READONLY, "Seconds per time unit in timings."},
    {"text", T_OBJECT, offsetof(LineStats, text), READONLY, "The text report."},
    {"html", T_OBJECT, offsetof(LineStats, html), READONLY, "The HTML report."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot ls_slots[] = {
    {Py_tp_dealloc, ls_dealloc},
    {Py_tp_traverse, ls_traverse},
    {Py_tp_clear, ls_clear},
    {Py_tp_methods, ls_methods},
    {Py_tp_members, ls_members},
    {Py_tp_str, ls_str},
    {Py_tp_repr, ls_repr},
    {Py_tp_doc, "Results of a line profile: .timings and .unit in line_profiler's layout, .text, "
                ".html, and dump(filename)."},
    {0, NULL},
};

static PyType_Spec ls_spec = {
    .name = "pyrometer.LineStats",
    .basicsize = sizeof(LineStats),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ls_slots,
};

/* ---- the magic ------------------------------------------------------------------------- */

/* Collects every -f and -m target into prof. Returns 0, or -1. */
static int add_targets(PyObject *prof, lp_opts *o, PyObject *ns)
{
    if (PyList_GET_SIZE(o->funcs) == 0 && PyList_GET_SIZE(o->mods) == 0)
        return usage_error("nothing to profile: name the functions with -f (or modules with -m), "
                           "e.g. %%lprun -f f f(10)");
    const char *st = PyUnicode_AsUTF8(o->stmt);
    if (st == NULL)
        return -1;
    /* With no statement, a call in -f is the forgotten `%lprun -f f(10)`. */
    for (Py_ssize_t i = 0; st[0] == '\0' && i < PyList_GET_SIZE(o->funcs); i++) {
        PyObject *expr = PyList_GET_ITEM(o->funcs, i);
        PyObject *fs = called_func_src(expr);
        if (fs != NULL) {
            call_error(expr, fs, o->stmt, "");
            Py_DECREF(fs);
            return -1;
        }
        if (PyErr_Occurred())
            return -1;
    }
    if (st[0] == '\0') {
        const char *f0 =
            PyList_GET_SIZE(o->funcs) ? PyUnicode_AsUTF8(PyList_GET_ITEM(o->funcs, 0)) : "f";
        return usage_error(
            "no statement to run: put it after the options, e.g. %%lprun -f %s %s(...)",
            f0 ? f0 : "f", f0 ? f0 : "f");
    }
    /* A call with a statement after it may be meant (-f make_adder(3) gives
     * the closure's code); it only gets the call message if it fails. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o->funcs); i++) {
        PyObject *expr = PyList_GET_ITEM(o->funcs, i);
        const char *e = PyUnicode_AsUTF8(expr);
        if (e == NULL)
            return -1;
        PyObject *fs = called_func_src(expr);
        if (fs == NULL && PyErr_Occurred())
            return -1;
        PyObject *obj = eval_target(expr, ns);
        int n = obj ? lprun_add_target(prof, obj, e) : -1;
        Py_XDECREF(obj);
        if (n < 0 && fs != NULL && PyErr_ExceptionMatches(UsageError))
            call_error(expr, fs, o->stmt,
                       obj ? " whose result cannot be profiled" : " that failed");
        Py_XDECREF(fs);
        if (n < 0)
            return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o->mods); i++) {
        PyObject *name = PyList_GET_ITEM(o->mods, i);
        const char *m = PyUnicode_AsUTF8(name);
        if (m == NULL)
            return -1;
        PyObject *mod = lineprof_import(m);
        if (mod == NULL) {
            char why[512];
            options_take_error(why, sizeof why);
            return usage_error("-m %s: could not import it (%s); -m takes a module name, e.g. "
                               "-m mypkg.mymod",
                               m, why);
        }
        char what[300];
        snprintf(what, sizeof what, "-m %s", m);
        int n = add_target(prof, mod, what, 0);
        Py_DECREF(mod);
        if (n < 0)
            return -1;
    }
    return 0;
}

/* Shows the results (display + -T/-D) and builds the -r object. Returns a new
 * reference (None or the LineStats), or NULL with an exception set. */
static PyObject *report(PyObject *prof, lp_opts *o, int64_t wall, PyObject *display,
                        int interrupted)
{
    lprun_report rep = {0};
    report_buf text = REPORT_BUF_INIT, html = REPORT_BUF_INIT, stats_text = REPORT_BUF_INIT;
    PyObject *bundle = NULL, *st = NULL, *result = NULL;

    rep.unit = o->unit > 0 ? o->unit : 1e-9;
    rep.strip = o->strip;
    rep.wall = wall;
    if (lprun_report_gather(prof, &rep) < 0)
        goto done;
    /* The stats object and the -T file get line_profiler's layout; the
     * display wraps long source lines, and adds the notes about the files. */
    lprun_render_text(&rep, &stats_text, 0);
    lprun_render_text(&rep, &text, 1);
    lprun_render_html(&rep, &html);
    if (interrupted) {
        report_note(&stats_text, NULL,
                    "*** The statement raised; these are the timings up to that point.");
        report_buf_puts(&stats_text, "\n");
        report_note(&text, &html,
                    "*** The statement raised; these are the timings up to that point.");
        report_buf_puts(&text, "\n");
    }
    if (o->text_file) {
        PyObject *t = report_buf_to_str(&stats_text);
        int bad = t == NULL || report_write_text(o->text_file, t) < 0;
        Py_XDECREF(t);
        if (bad)
            goto done;
    }
    if (o->dump_file) {
        PyObject *timings = timings_new(&rep);
        int bad = timings == NULL || write_dump(timings, 1e-9, o->dump_file) < 0;
        Py_XDECREF(timings);
        if (bad)
            goto done;
    }
    if (o->text_file) {
        const char *fn = PyUnicode_AsUTF8(o->text_file);
        report_buf_puts(&text, "\n");
        report_note(&text, &html, "*** Profile printout saved to text file '%s'.", fn ? fn : "?");
        report_buf_puts(&text, "\n");
    }
    if (o->dump_file) {
        const char *fn = PyUnicode_AsUTF8(o->dump_file);
        report_buf_puts(&text, "\n");
        report_note(&text, &html, "*** Profile stats pickled to file '%s'.", fn ? fn : "?");
        report_buf_puts(&text, "\n");
    }
    report_html_close(&html);
    st = stats_from_report(&rep, &stats_text, &html);
    if (st == NULL)
        goto done;
    bundle = report_bundle_new(&text, &html);
    if (bundle == NULL)
        goto done;
    PyObject *r = PyObject_CallOneArg(display, bundle);
    if (r == NULL)
        goto done;
    Py_DECREF(r);
    result = o->ret ? Py_NewRef(st) : Py_NewRef(Py_None);
done:
    lprun_report_clear(&rep);
    report_buf_free(&text);
    report_buf_free(&html);
    report_buf_free(&stats_text);
    Py_XDECREF(bundle);
    Py_XDECREF(st);
    return result;
}

PyDoc_STRVAR(
    lprun_doc,
    "lprun(line, cell, ns, display)\n--\n\n"
    "%lprun [-f func]... [-m module]... [-u unit] [-z|-s] [-T file] [-D file] [-r] statement\n\n"
    "Run the statement under the native line profiler and show, for each target function, "
    "hits and time per line. -f takes functions, methods, properties, classes, closures, "
    "wraps-decorated functions; -m a module; -u the output unit in seconds; -z/-s hides "
    "functions that never ran; -T writes the text; -D a dump that `python3 -m line_profiler` "
    "reads; -r returns a pyrometer.LineStats.");

static PyObject *lprun_magic(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    lp_opts o = {0};
    PyObject *prof = NULL, *code = NULL, *res = NULL, *result = NULL;

    if (nargs != 4 || !PyUnicode_Check(args[0]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "lprun(line: str, cell: str | None, ns: dict, display)");
        return NULL;
    }
    PyObject *ns = args[2], *display = args[3];
    if (parse_opts(module, args[0], args[1], &o) < 0)
        goto done;
    prof = lineprof_new();
    if (prof == NULL)
        goto done;
    if (add_targets(prof, &o, ns) < 0)
        goto done;
    const char *st = PyUnicode_AsUTF8(o.stmt);
    if (st == NULL)
        goto done;
    code = Py_CompileString(st, "<lprun statement>", Py_file_input);
    if (code == NULL)
        goto done;

    if (lineprof_enable(prof) < 0)
        goto done;
    int64_t t0 = now_ns();
    res = PyEval_EvalCode(code, ns, ns);
    int64_t wall = now_ns() - t0;
    lineprof_disable(prof);

    if (res == NULL) {
        PyObject *exc, *val, *tb;
        PyErr_Fetch(&exc, &val, &tb);
        PyObject *shown = report(prof, &o, wall, display, 1);
        if (shown == NULL)
            PyErr_Clear(); /* the statement's exception matters more */
        Py_XDECREF(shown);
        PyErr_Restore(exc, val, tb);
        goto done;
    }
    result = report(prof, &o, wall, display, 0);
done:
    opts_clear(&o);
    Py_XDECREF(prof);
    Py_XDECREF(code);
    Py_XDECREF(res);
    return result;
}

static PyMethodDef lprun_defs[] = {
    {"lprun", (PyCFunction)(void (*)(void))lprun_magic, METH_FASTCALL, lprun_doc},
    {NULL, NULL, 0, NULL},
};

int lprun_module_exec(PyObject *module)
{
    Py_XSETREF(UsageError, PyObject_GetAttrString(module, "UsageError"));
    if (UsageError == NULL)
        return -1;
    if (LineStats_Type == NULL) {
        LineStats_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ls_spec, NULL);
        if (LineStats_Type == NULL)
            return -1;
    }
    if (PyModule_AddObjectRef(module, "LineStats", (PyObject *)LineStats_Type) < 0)
        return -1;
    static const char *const kinds[] = {"line_cell"};
    if (module_add_magic_help(module, "lprun", &lprun_magic_spec) < 0 ||
        module_add_magics(module, lprun_defs, kinds) < 0)
        return -1;
    /* pyrometer.lprun: the magic's callable, also as a module attribute. */
    PyObject *fn = PyCFunction_NewEx(&lprun_defs[0], module, NULL);
    if (fn == NULL)
        return -1;
    int rc = PyModule_AddObjectRef(module, "lprun", fn);
    Py_DECREF(fn);
    return rc;
}
