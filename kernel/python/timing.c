/* timing.c - %time/%%time and %timeit/%%timeit, measured the way IPython
 * measures them (getrusage CPU times and a monotonic wall clock; timeit's
 * autorange calibration and best-of-repeat runs with the collector off),
 * and TimeitResult, the heap type that `%timeit -o` returns. The user's
 * statements run in the user namespace, transformed like a cell. */
#include "timing.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <ctype.h>
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "interp.h"
#include "magics.h"
#include "transform.h"

/* The TimeitResult type (owned). Created once at registration; protected by
 * the GIL. */
static PyObject *timeit_result_type;

/* ---- formatting ----------------------------------------------------------- */

void timing_format(double t, int precision, char *buf, size_t len)
{
    static const char *const units[] = {"s", "ms", "\xc2\xb5s", "ns"};
    static const double scale[] = {1.0, 1e3, 1e6, 1e9};

    if (t >= 60.0) { /* 1d 2h 3min 4s, stopping once under a second is left */
        static const struct {
            const char *suffix;
            double len;
        } parts[] = {{"d", 86400.0}, {"h", 3600.0}, {"min", 60.0}, {"s", 1.0}};
        size_t o = 0;
        double left = t;
        buf[0] = '\0';
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            long v = (long)(left / parts[i].len);
            if (v > 0) {
                left = fmod(left, parts[i].len);
                o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "%s%ld%s", o ? " " : "", v,
                                      parts[i].suffix);
            }
            if (left < 1.0 || o >= len)
                break;
        }
        return;
    }
    int order = 3;
    if (t > 0.0) {
        /* Python's -(floor(log10(t)) // 3), capped at ns. */
        order = -(int)floor(floor(log10(t)) / 3.0);
        if (order > 3)
            order = 3;
        if (order < 0)
            order = 0;
    }
    snprintf(buf, len, "%.*g %s", precision, t * scale[order], units[order]);
}

/* ---- TimeitResult ------------------------------------------------------------ */

typedef struct {
    PyObject ob_base; /* PyObject_HEAD */
    Py_ssize_t loops, repeat;
    double best, worst, compile_time;
    int precision;
    PyObject *all_runs; /* owned list of floats: seconds per run of `loops` loops */
    PyObject *timings;  /* owned list of floats: seconds per loop of each run */
} TimeitResult;

static double result_average(TimeitResult *r)
{
    Py_ssize_t n = PyList_GET_SIZE(r->timings);
    double sum = 0.0, c = 0.0; /* Kahan summation, close to math.fsum */
    for (Py_ssize_t i = 0; i < n; i++) {
        double y = PyFloat_AsDouble(PyList_GET_ITEM(r->timings, i)) - c;
        double t = sum + y;
        c = (t - sum) - y;
        sum = t;
    }
    return n ? sum / (double)n : 0.0;
}

static double result_stdev(TimeitResult *r)
{
    Py_ssize_t n = PyList_GET_SIZE(r->timings);
    double mean = result_average(r), acc = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double d = PyFloat_AsDouble(PyList_GET_ITEM(r->timings, i)) - mean;
        acc += d * d;
    }
    return n ? sqrt(acc / (double)n) : 0.0;
}

/* Formats n with thousands separators, as "{:,}". */
static void group_thousands(Py_ssize_t n, char *buf, size_t len)
{
    char digits[32];
    int nd = snprintf(digits, sizeof digits, "%zd", n);
    size_t o = 0;
    for (int i = 0; i < nd && o + 2 < len; i++) {
        buf[o++] = digits[i];
        int left = nd - 1 - i;
        if (left > 0 && left % 3 == 0 && digits[i] != '-')
            buf[o++] = ',';
    }
    buf[o] = '\0';
}

/* "X µs ± Y ns per loop (mean ± std. dev. of R runs, N loops each)" */
static void result_text(TimeitResult *r, char *buf, size_t len)
{
    char mean[64], sd[64], loops[40];
    timing_format(result_average(r), r->precision, mean, sizeof mean);
    timing_format(result_stdev(r), r->precision, sd, sizeof sd);
    group_thousands(r->loops, loops, sizeof loops);
    snprintf(buf, len,
             "%s \xc2\xb1 %s per loop (mean \xc2\xb1 std. dev. of %zd run%s, %s loop%s each)", mean,
             sd, r->repeat, r->repeat == 1 ? "" : "s", loops, r->loops == 1 ? "" : "s");
}

static PyObject *result_str(PyObject *self)
{
    char buf[256];
    result_text((TimeitResult *)self, buf, sizeof buf);
    return PyUnicode_FromString(buf);
}

static PyObject *result_repr(PyObject *self)
{
    char buf[256];
    result_text((TimeitResult *)self, buf, sizeof buf);
    return PyUnicode_FromFormat("<TimeitResult : %s>", buf);
}

static PyObject *result_get_average(PyObject *self, void *closure)
{
    TimeitResult *r = (TimeitResult *)self;
    if (PyList_GET_SIZE(r->timings) == 0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "no runs");
        return NULL;
    }
    return PyFloat_FromDouble(result_average(r));
}

static PyObject *result_get_stdev(PyObject *self, void *closure)
{
    TimeitResult *r = (TimeitResult *)self;
    if (PyList_GET_SIZE(r->timings) == 0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "no runs");
        return NULL;
    }
    return PyFloat_FromDouble(result_stdev(r));
}

/* TimeitResult(loops, repeat, best, worst, all_runs, compile_time,
 * precision=3), the same arguments as IPython's class. */
static PyObject *result_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"loops",    "repeat",       "best",      "worst",
                             "all_runs", "compile_time", "precision", NULL};
    Py_ssize_t loops, repeat;
    double best, worst, compile_time;
    int precision = 3;
    PyObject *runs;
    TimeitResult *r = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "nnddOd|i:TimeitResult", kwlist, &loops, &repeat,
                                     &best, &worst, &runs, &compile_time, &precision))
        return NULL;
    if (loops <= 0) {
        PyErr_SetString(PyExc_ValueError, "loops must be positive");
        return NULL;
    }
    r = (TimeitResult *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    r->loops = loops;
    r->repeat = repeat;
    r->best = best;
    r->worst = worst;
    r->compile_time = compile_time;
    r->precision = precision;
    r->all_runs = PySequence_List(runs);
    r->timings = PyList_New(0);
    if (r->all_runs == NULL || r->timings == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(r->all_runs); i++) {
        double dt = PyFloat_AsDouble(PyList_GET_ITEM(r->all_runs, i));
        if (dt == -1.0 && PyErr_Occurred())
            goto error;
        PyObject *f = PyFloat_FromDouble(dt / (double)loops);
        if (f == NULL || PyList_Append(r->timings, f) < 0) {
            Py_XDECREF(f);
            goto error;
        }
        Py_DECREF(f);
    }
    return (PyObject *)r;
error:
    Py_DECREF(r);
    return NULL;
}

static int result_traverse(PyObject *self, visitproc visit, void *arg)
{
    TimeitResult *r = (TimeitResult *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(r->all_runs);
    Py_VISIT(r->timings);
    return 0;
}

static int result_clear(PyObject *self)
{
    TimeitResult *r = (TimeitResult *)self;
    Py_CLEAR(r->all_runs);
    Py_CLEAR(r->timings);
    return 0;
}

static void result_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    result_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMemberDef result_members[] = {
    {"loops", T_PYSSIZET, offsetof(TimeitResult, loops), READONLY, "loops per run"},
    {"repeat", T_PYSSIZET, offsetof(TimeitResult, repeat), READONLY, "number of runs"},
    {"best", T_DOUBLE, offsetof(TimeitResult, best), READONLY, "fastest run / loops (s)"},
    {"worst", T_DOUBLE, offsetof(TimeitResult, worst), READONLY, "slowest run / loops (s)"},
    {"compile_time", T_DOUBLE, offsetof(TimeitResult, compile_time), READONLY,
     "time to compile the statement (s)"},
    {"all_runs", T_OBJECT_EX, offsetof(TimeitResult, all_runs), READONLY,
     "total time of each run (s)"},
    {"timings", T_OBJECT_EX, offsetof(TimeitResult, timings), READONLY,
     "time per loop of each run (s)"},
    {"_precision", T_INT, offsetof(TimeitResult, precision), READONLY, "digits shown"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef result_getset[] = {
    {"average", result_get_average, NULL, "mean time per loop (s)", NULL},
    {"stdev", result_get_stdev, NULL, "standard deviation of the time per loop (s)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot result_slots[] = {
    {Py_tp_doc, "The result of %timeit -o: loops, repeat, best, worst, all_runs, timings, "
                "average, stdev, compile_time."},
    {Py_tp_new, result_new},
    {Py_tp_dealloc, result_dealloc},
    {Py_tp_traverse, result_traverse},
    {Py_tp_clear, result_clear},
    {Py_tp_str, result_str},
    {Py_tp_repr, result_repr},
    {Py_tp_members, result_members},
    {Py_tp_getset, result_getset},
    {0, NULL},
};

static PyType_Spec result_spec = {
    "_pyrometer_kernel.TimeitResult",
    sizeof(TimeitResult),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    result_slots,
};

/* ---- compiling the user's statements ------------------------------------------ */

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Transforms text like a cell (so magics and !cmd work inside) and parses it
 * into an ast.Module. Returns a new reference, or NULL with an exception. */
static PyObject *parse_module(const char *text, const char *filename)
{
    char err[256];
    char *src = transform_cell(text, err, sizeof err);
    if (src == NULL) {
        PyErr_SetString(PyExc_SyntaxError, err);
        return NULL;
    }
    PyCompilerFlags flags = {PyCF_ONLY_AST, PY_MINOR_VERSION};
    PyObject *mod = Py_CompileStringExFlags(src, filename, Py_file_input, &flags, -1);
    free(src);
    return mod;
}

/* compile(tree, filename, mode). Returns a new code object or NULL. */
static PyObject *compile_ast(PyObject *tree, const char *filename, const char *mode)
{
    PyObject *builtins = PyImport_ImportModule("builtins");
    if (builtins == NULL)
        return NULL;
    PyObject *code = PyObject_CallMethod(builtins, "compile", "Oss", tree, filename, mode);
    Py_DECREF(builtins);
    return code;
}

/* 1 if node is an ast.Expr, 0 if not, -1 with an exception. */
static int is_expr(PyObject *astm, PyObject *node)
{
    PyObject *expr_t = PyObject_GetAttrString(astm, "Expr");
    if (expr_t == NULL)
        return -1;
    int r = PyObject_IsInstance(node, expr_t);
    Py_DECREF(expr_t);
    return r;
}

/* ast.Expression(node.value), compiled in eval mode. */
static PyObject *compile_expr_node(PyObject *astm, PyObject *node, const char *filename)
{
    PyObject *value = PyObject_GetAttrString(node, "value");
    if (value == NULL)
        return NULL;
    PyObject *expr = PyObject_CallMethod(astm, "Expression", "(O)", value);
    Py_DECREF(value);
    if (expr == NULL)
        return NULL;
    PyObject *code = compile_ast(expr, filename, "eval");
    Py_DECREF(expr);
    return code;
}

static int blank(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return *s == '\0';
}

/* ---- %time ---------------------------------------------------------------------- */

static double tv_seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* %time stmt / %%time: runs the statement once and prints CPU and wall
 * times. A lone expression (or a cell's last one) gives the value. */
static PyObject *m_time(PyObject *line, PyObject *cell)
{
    PyObject *astm = NULL, *tree = NULL, *body = NULL, *code = NULL, *code_last = NULL;
    PyObject *out = NULL;
    const char *text = PyUnicode_AsUTF8(cell ? cell : line);
    const char *ltext = PyUnicode_AsUTF8(line);
    if (text == NULL || ltext == NULL)
        return NULL;
    if (cell && !blank(ltext))
        return magics_usage_error("Can't use statement directly after '%%%%time'! "
                                  "Usage: %%%%time on the first line, the statements below.");

    double tp0 = now_wall();
    tree = parse_module(text, "<timed exec>");
    double tp = now_wall() - tp0;
    astm = tree ? PyImport_ImportModule("ast") : NULL;
    body = astm ? PyObject_GetAttrString(tree, "body") : NULL;
    if (body == NULL)
        goto error;
    if (!PyList_Check(body)) {
        PyErr_SetString(PyExc_TypeError, "ast.Module.body is not a list");
        goto error;
    }
    Py_ssize_t n = PyList_GET_SIZE(body);
    int last_is_expr = n > 0 ? is_expr(astm, PyList_GET_ITEM(body, n - 1)) : 0;
    if (last_is_expr < 0)
        goto error;
    double tc0 = now_wall();
    if (n == 1 && last_is_expr) {
        code = compile_expr_node(astm, PyList_GET_ITEM(body, 0), "<timed eval>");
    } else {
        if (n > 1 && last_is_expr) { /* multi-line %%time: the last value is shown */
            code_last = compile_expr_node(astm, PyList_GET_ITEM(body, n - 1), "<timed exec>");
            if (code_last == NULL || PyList_SetSlice(body, n - 1, n, NULL) < 0)
                goto error;
        }
        code = compile_ast(tree, "<timed exec>", "exec");
    }
    double tc = now_wall() - tc0;
    if (code == NULL)
        goto error;

    PyObject *ns = interp_user_ns();
    struct rusage ru0, ru1;
    double w0 = now_wall();
    getrusage(RUSAGE_SELF, &ru0);
    out = PyEval_EvalCode(code, ns, ns);
    if (out != NULL && code_last != NULL)
        Py_SETREF(out, PyEval_EvalCode(code_last, ns, ns));
    getrusage(RUSAGE_SELF, &ru1);
    double wall = now_wall() - w0;
    if (out == NULL)
        goto error;

    double user = tv_seconds(ru1.ru_utime) - tv_seconds(ru0.ru_utime);
    double sys = tv_seconds(ru1.ru_stime) - tv_seconds(ru0.ru_stime);
    char u[64], s[64], t[64], w[64], msg[512];
    timing_format(user, 3, u, sizeof u);
    timing_format(sys, 3, s, sizeof s);
    timing_format(user + sys, 3, t, sizeof t);
    timing_format(wall, 3, w, sizeof w);
    snprintf(msg, sizeof msg, "CPU times: user %s, sys: %s, total: %s\nWall time: %s\n", u, s, t,
             w);
    if (magics_write_stdout(msg) < 0)
        goto error;
    if (tc > 0.1) {
        timing_format(tc, 3, t, sizeof t);
        snprintf(msg, sizeof msg, "Compiler : %s\n", t);
        if (magics_write_stdout(msg) < 0)
            goto error;
    }
    if (tp > 0.1) {
        timing_format(tp, 3, t, sizeof t);
        snprintf(msg, sizeof msg, "Parser   : %s\n", t);
        if (magics_write_stdout(msg) < 0)
            goto error;
    }
    Py_DECREF(astm);
    Py_DECREF(tree);
    Py_DECREF(body);
    Py_DECREF(code);
    Py_XDECREF(code_last);
    return out;
error:
    Py_XDECREF(astm);
    Py_XDECREF(tree);
    Py_XDECREF(body);
    Py_XDECREF(code);
    Py_XDECREF(code_last);
    Py_XDECREF(out);
    return NULL;
}

/* ---- %timeit ------------------------------------------------------------------ */

#define TIMEIT_USAGE "Usage: %%timeit [-n<N> -r<R> -p<P> -q -o] statement"

typedef struct {
    long number;   /* loops per run; 0: calibrate */
    long repeat;   /* runs */
    int precision; /* significant digits shown */
    int quiet, ret;
} timeit_opts;

/* Parses a positive (or, with allow_zero, non-negative) integer option
 * value. Returns 0, or -1 with a UsageError set. */
static int option_long(char opt, const char *v, size_t n, long *out, int allow_zero)
{
    char tmp[32], *end;
    if (n == 0 || n >= sizeof tmp) {
        magics_usage_error("%%timeit: option -%c needs an integer value. " TIMEIT_USAGE, opt);
        return -1;
    }
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    long x = strtol(tmp, &end, 10);
    if (*end != '\0' || x < (allow_zero ? 0 : 1)) {
        magics_usage_error("%%timeit: option -%c needs a %s integer, not '%s'. " TIMEIT_USAGE, opt,
                           allow_zero ? "non-negative" : "positive", tmp);
        return -1;
    }
    *out = x;
    return 0;
}

/* Parses "-n 10 -r3 -qo stmt": sets o and *rest to the statement. Returns 0,
 * or -1 with a UsageError set. */
static int parse_timeit(const char *s, timeit_opts *o, const char **rest)
{
    o->number = 0;
    o->repeat = 7;
    o->precision = 3;
    o->quiet = o->ret = 0;
    while (isspace((unsigned char)*s))
        s++;
    while (s[0] == '-' && (isalpha((unsigned char)s[1]) || s[1] == '-')) {
        if (s[1] == '-') { /* "--" ends the options */
            s += 2;
            while (isspace((unsigned char)*s))
                s++;
            break;
        }
        s++;
        while (*s && !isspace((unsigned char)*s)) {
            char c = *s++;
            if (c == 'n' || c == 'r' || c == 'p') {
                if (*s == '\0' || isspace((unsigned char)*s)) { /* value in the next word */
                    while (isspace((unsigned char)*s))
                        s++;
                }
                const char *v = s;
                while (*s && !isspace((unsigned char)*s))
                    s++;
                long x;
                if (option_long(c, v, (size_t)(s - v), &x, c == 'n') < 0)
                    return -1;
                if (c == 'n')
                    o->number = x;
                else if (c == 'r')
                    o->repeat = x;
                else
                    o->precision = x > 30 ? 30 : (int)x;
                break;
            } else if (c == 'q') {
                o->quiet = 1;
            } else if (c == 'o') {
                o->ret = 1;
            } else if (c == 't' || c == 'c') {
                /* IPython's clock choices; the monotonic perf_counter serves both */
            } else {
                magics_usage_error("%%timeit: unknown option -%c. " TIMEIT_USAGE, c);
                return -1;
            }
        }
        while (isspace((unsigned char)*s))
            s++;
    }
    *rest = s;
    return 0;
}

/* Builds the timing function, as timeit's template does but on the AST so
 * that the user's code is not re-indented as text:
 *     def inner(_it, _timer):
 *         <setup>
 *         _t0 = _timer()
 *         for _i in _it:
 *             <stmt>
 *         _t1 = _timer()
 *         return _t1 - _t0
 * and defines it with the user namespace as its globals. Returns a new
 * reference, or NULL with an exception; *compile_time gets the seconds spent
 * compiling. */
static PyObject *build_inner(const char *setup, const char *stmt, double *compile_time)
{
    static const char tmpl_src[] = "def inner(_it, _timer):\n"
                                   "    pass\n"
                                   "    _t0 = _timer()\n"
                                   "    for _i in _it:\n"
                                   "        pass\n"
                                   "    _t1 = _timer()\n"
                                   "    return _t1 - _t0\n";
    PyObject *setup_t = NULL, *stmt_t = NULL, *tmpl = NULL, *fbody = NULL, *floop = NULL;
    PyObject *sbody = NULL, *tbody = NULL, *code = NULL, *locals = NULL, *res = NULL;
    PyObject *inner = NULL;
    PyCompilerFlags flags = {PyCF_ONLY_AST, PY_MINOR_VERSION};

    setup_t = parse_module(setup, "<magic-timeit-setup>");
    stmt_t = setup_t ? parse_module(stmt, "<magic-timeit-stmt>") : NULL;
    if (stmt_t == NULL)
        goto error;
    /* Compile each alone first: code that is only valid inside the
     * function and the loop (return, break) is an error, as in IPython. */
    code = compile_ast(setup_t, "<magic-timeit-setup>", "exec");
    if (code == NULL)
        goto error;
    Py_SETREF(code, compile_ast(stmt_t, "<magic-timeit-stmt>", "exec"));
    if (code == NULL)
        goto error;
    Py_CLEAR(code);

    tmpl = Py_CompileStringExFlags(tmpl_src, "<magic-timeit>", Py_file_input, &flags, -1);
    PyObject *tmod_body = tmpl ? PyObject_GetAttrString(tmpl, "body") : NULL;
    if (tmod_body == NULL)
        goto error;
    fbody = PyObject_GetAttrString(PyList_GET_ITEM(tmod_body, 0), "body");
    Py_DECREF(tmod_body);
    sbody = fbody ? PyObject_GetAttrString(setup_t, "body") : NULL;
    tbody = sbody ? PyObject_GetAttrString(stmt_t, "body") : NULL;
    if (tbody == NULL)
        goto error;
    if (!PyList_Check(fbody) || !PyList_Check(sbody) || !PyList_Check(tbody)) {
        PyErr_SetString(PyExc_TypeError, "unexpected AST");
        goto error;
    }
    floop = Py_NewRef(PyList_GET_ITEM(fbody, 2));
    if (PyList_GET_SIZE(tbody) > 0 && PyObject_SetAttrString(floop, "body", tbody) < 0)
        goto error;
    if (PyList_GET_SIZE(sbody) > 0 && PyList_SetSlice(fbody, 0, 1, sbody) < 0)
        goto error;

    double t0 = now_wall();
    code = compile_ast(tmpl, "<magic-timeit>", "exec");
    *compile_time = now_wall() - t0;
    locals = code ? PyDict_New() : NULL;
    if (locals == NULL)
        goto error;
    res = PyEval_EvalCode(code, interp_user_ns(), locals);
    if (res == NULL)
        goto error;
    inner = PyDict_GetItemString(locals, "inner");
    Py_XINCREF(inner);
    if (inner == NULL)
        PyErr_SetString(PyExc_RuntimeError, "timeit: the timing function was not defined");
error:
    Py_XDECREF(setup_t);
    Py_XDECREF(stmt_t);
    Py_XDECREF(tmpl);
    Py_XDECREF(fbody);
    Py_XDECREF(floop);
    Py_XDECREF(sbody);
    Py_XDECREF(tbody);
    Py_XDECREF(code);
    Py_XDECREF(locals);
    Py_XDECREF(res);
    return inner;
}

/* What a timing run needs (all owned). */
typedef struct {
    PyObject *inner, *repeat_fn, *timer, *gc;
} timer_ctx;

/* Runs inner for number loops with the cyclic collector off, as timeit
 * does. Returns the seconds taken, or -1 with an exception set. */
static double run_once(timer_ctx *t, long number)
{
    PyObject *it = PyObject_CallFunction(t->repeat_fn, "Ol", Py_None, number);
    if (it == NULL)
        return -1.0;
    PyObject *was = PyObject_CallMethod(t->gc, "isenabled", NULL);
    PyObject *off = was ? PyObject_CallMethod(t->gc, "disable", NULL) : NULL;
    PyObject *r = off ? PyObject_CallFunctionObjArgs(t->inner, it, t->timer, NULL) : NULL;
    if (was == Py_True) { /* restore even when the statement raised */
        PyObject *exc_t, *exc_v, *exc_tb;
        PyErr_Fetch(&exc_t, &exc_v, &exc_tb);
        PyObject *on = PyObject_CallMethod(t->gc, "enable", NULL);
        Py_XDECREF(on);
        PyErr_Clear();
        PyErr_Restore(exc_t, exc_v, exc_tb);
    }
    Py_DECREF(it);
    Py_XDECREF(was);
    Py_XDECREF(off);
    if (r == NULL)
        return -1.0;
    double dt = PyFloat_AsDouble(r);
    Py_DECREF(r);
    if (dt == -1.0 && PyErr_Occurred())
        return -1.0;
    return dt < 0.0 ? 0.0 : dt;
}

/* %timeit [opts] stmt / %%timeit [opts] setup \n body. */
static PyObject *m_timeit(PyObject *line, PyObject *cell)
{
    timeit_opts o;
    const char *rest, *ltext = PyUnicode_AsUTF8(line);
    const char *ctext = cell ? PyUnicode_AsUTF8(cell) : NULL;
    timer_ctx t = {NULL, NULL, NULL, NULL};
    PyObject *runs = NULL, *result = NULL, *itertools = NULL, *timemod = NULL;
    double compile_time = 0.0;

    if (ltext == NULL || (cell && ctext == NULL))
        return NULL;
    if (parse_timeit(ltext, &o, &rest) < 0)
        return NULL;
    if (cell == NULL && blank(rest))
        return magics_usage_error("%%timeit: no statement to time. " TIMEIT_USAGE);
    t.inner =
        cell ? build_inner(rest, ctext, &compile_time) : build_inner("pass", rest, &compile_time);
    if (t.inner == NULL)
        goto error;
    itertools = PyImport_ImportModule("itertools");
    timemod = itertools ? PyImport_ImportModule("time") : NULL;
    t.gc = timemod ? PyImport_ImportModule("gc") : NULL;
    t.repeat_fn = t.gc ? PyObject_GetAttrString(itertools, "repeat") : NULL;
    t.timer = t.repeat_fn ? PyObject_GetAttrString(timemod, "perf_counter") : NULL;
    if (t.timer == NULL)
        goto error;

    long number = o.number;
    if (number == 0) { /* timeit's autorange: 1, 2, 5, 10, 20, 50, ... until >= 0.2 s */
        static const long steps[] = {1, 2, 5};
        for (long base = 1; number == 0; base *= 10) {
            for (int i = 0; i < 3; i++) {
                double dt = run_once(&t, base * steps[i]);
                if (dt < 0.0)
                    goto error;
                if (dt >= 0.2 || base >= 1000000000L) {
                    number = base * steps[i];
                    break;
                }
            }
        }
    }
    runs = PyList_New(0);
    if (runs == NULL)
        goto error;
    double best = 0.0, worst = 0.0;
    for (long i = 0; i < o.repeat; i++) {
        double dt = run_once(&t, number);
        if (dt < 0.0)
            goto error;
        PyObject *f = PyFloat_FromDouble(dt);
        if (f == NULL || PyList_Append(runs, f) < 0) {
            Py_XDECREF(f);
            goto error;
        }
        Py_DECREF(f);
        if (i == 0 || dt < best)
            best = dt;
        if (i == 0 || dt > worst)
            worst = dt;
    }
    best /= (double)number;
    worst /= (double)number;
    result = PyObject_CallFunction(timeit_result_type, "llddOdi", number, o.repeat, best, worst,
                                   runs, compile_time, o.precision);
    if (result == NULL)
        goto error;
    if (!o.quiet) {
        char msg[512], text[256];
        if (worst > 4.0 * best && best > 0.0 && worst > 1e-6) {
            snprintf(msg, sizeof msg,
                     "The slowest run took %0.2f times longer than the fastest. This could "
                     "mean that an intermediate result is being cached.\n",
                     worst / best);
            if (magics_write_stdout(msg) < 0)
                goto error;
        }
        result_text((TimeitResult *)result, text, sizeof text);
        snprintf(msg, sizeof msg, "%s\n", text);
        if (magics_write_stdout(msg) < 0)
            goto error;
        if (compile_time > 0.1) {
            snprintf(msg, sizeof msg, "Compiler time: %.2f s\n", compile_time);
            if (magics_write_stdout(msg) < 0)
                goto error;
        }
    }
    if (!o.ret)
        Py_SETREF(result, Py_NewRef(Py_None));
error:
    Py_XDECREF(t.inner);
    Py_XDECREF(t.repeat_fn);
    Py_XDECREF(t.timer);
    Py_XDECREF(t.gc);
    Py_XDECREF(itertools);
    Py_XDECREF(timemod);
    Py_XDECREF(runs);
    if (PyErr_Occurred())
        Py_CLEAR(result);
    return result;
}

static const char time_help[] =
    "%time STATEMENT\n"
    "%%time   (the cell body is timed)\n"
    "\n"
    "Time one run of a statement or cell: CPU times and wall time.\n"
    "\n"
    "Prints \"CPU times: user ..., sys ..., total ...\" and \"Wall time: ...\" as IPython\n"
    "does. %time EXPR returns the value of EXPR, so x = %time f() keeps it. It has\n"
    "no options.\n"
    "\n"
    "Example:\n"
    "  %time sum(range(10**7))\n"
    "  result = %time slow_function()";

static const char timeit_help[] =
    "%timeit [-n N] [-r R] [-p P] [-q] [-o] STATEMENT\n"
    "%%timeit [options] [SETUP]   (the cell body is timed; the line is setup)\n"
    "\n"
    "Time a statement: the mean and standard deviation of R runs of N loops each.\n"
    "\n"
    "Without -n the number of loops is calibrated so a run takes at least 0.2 s.\n"
    "A warning says so when the slowest run took much longer than the fastest.\n"
    "\n"
    "Options:\n"
    "  -n N                   loops per run (default: calibrated)\n"
    "  -r R                   runs (default 7)\n"
    "  -p P                   significant digits shown (default 3)\n"
    "  -q                     print nothing (with -o)\n"
    "  -o                     return a TimeitResult (.best, .average, .stdev,\n"
    "                         .all_runs, .loops, .repeat)\n"
    "\n"
    "Example:\n"
    "  %timeit -n 1000 -r 5 sorted(data)\n"
    "  t = %timeit -o -q sum(range(1000))";

int timing_register(void)
{
    PyObject *kmod = NULL;
    int rc = -1;

    if (timeit_result_type == NULL) {
        timeit_result_type = PyType_FromSpec(&result_spec);
        if (timeit_result_type == NULL)
            goto error;
    }
    kmod = PyImport_ImportModule("_pyrometer_kernel");
    if (kmod == NULL || PyObject_SetAttrString(kmod, "TimeitResult", timeit_result_type) < 0)
        goto error;
    if (magics_register("time", m_time, m_time, time_help) < 0 ||
        magics_register("timeit", m_timeit, m_timeit, timeit_help) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot register %time/%timeit");
        goto error;
    }
    rc = 0;
error:
    Py_XDECREF(kmod);
    return rc;
}
