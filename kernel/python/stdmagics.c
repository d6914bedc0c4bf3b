/* stdmagics.c - the kernel's standard magics on the user namespace and the
 * process: %cd, %env, %who, %who_ls, %whos, %reset, %magic, %matplotlib.
 * %time and %timeit live in timing.c, the inline display hooks in
 * stdmagics_hooks.c; this file registers them all. Every bad option raises
 * UsageError before anything is changed. */
#include "stdmagics.h"

#include <ctype.h>
#include <string.h>

#include "interp.h"
#include "magics.h"
#include "stdmagics_hooks.h"
#include "timing.h"

/* The directory before the last %cd (owned), or NULL. Protected by the GIL. */
static PyObject *prev_dir;

/* The name of v's type without its module ("int", "DataFrame"), as
 * type(v).__name__ shows it; borrowed from the type. */
static const char *short_type_name(PyObject *v)
{
    const char *name = Py_TYPE(v)->tp_name, *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

/* ---- helpers ------------------------------------------------------------------ */

/* Writes a str object to sys.stdout. */
static int write_obj(PyObject *s)
{
    PyObject *out = PySys_GetObject("stdout");
    if (out == NULL || out == Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "lost sys.stdout");
        return -1;
    }
    return PyFile_WriteObject(s, out, Py_PRINT_RAW);
}

/* Returns line stripped of surrounding whitespace as a new str, or NULL. */
static PyObject *stripped(PyObject *line)
{
    return PyObject_CallMethod(line, "strip", NULL);
}

/* Splits on whitespace: a new list of str, or NULL. */
static PyObject *words(PyObject *line)
{
    return PyObject_CallMethod(line, "split", NULL);
}

/* Names the user made: not starting with '_' and not the kernel's In/Out.
 * With types (a list of type names, may be empty), only variables whose
 * type's __name__ is one of them. Returns a new sorted list, or NULL. */
static PyObject *user_names(PyObject *types)
{
    PyObject *ns = interp_user_ns(), *names = PyList_New(0), *k, *v;
    Py_ssize_t pos = 0;
    if (names == NULL)
        return NULL;
    while (PyDict_Next(ns, &pos, &k, &v)) {
        if (!PyUnicode_Check(k))
            continue;
        const char *name = PyUnicode_AsUTF8(k);
        if (name == NULL)
            goto error;
        if (name[0] == '_' || strcmp(name, "In") == 0 || strcmp(name, "Out") == 0)
            continue;
        if (types && PyList_GET_SIZE(types) > 0) {
            PyObject *tn = PyUnicode_FromString(short_type_name(v));
            if (tn == NULL)
                goto error;
            int in = PySequence_Contains(types, tn);
            Py_DECREF(tn);
            if (in < 0)
                goto error;
            if (!in)
                continue;
        }
        if (PyList_Append(names, k) < 0)
            goto error;
    }
    if (PyList_Sort(names) < 0)
        goto error;
    return names;
error:
    Py_DECREF(names);
    return NULL;
}

/* ---- %cd ---------------------------------------------------------------------- */

/* %cd [-q] [dir | - ]: no dir goes home, "-" to the previous directory.
 * Prints the new directory unless -q. */
static PyObject *m_cd(PyObject *line, PyObject *cell)
{
    PyObject *os = NULL, *arg = NULL, *target = NULL, *old = NULL, *now = NULL, *r = NULL;
    PyObject *result = NULL;
    int quiet = 0;

    os = PyImport_ImportModule("os");
    arg = os ? stripped(line) : NULL;
    if (arg == NULL)
        goto error;
    const char *a = PyUnicode_AsUTF8(arg);
    if (a == NULL)
        goto error;
    if (strncmp(a, "-q", 2) == 0 && (a[2] == '\0' || isspace((unsigned char)a[2]))) {
        quiet = 1;
        a += 2;
        while (isspace((unsigned char)*a))
            a++;
    }
    size_t n = strlen(a);
    if (n >= 2 && (a[0] == '"' || a[0] == '\'') && a[n - 1] == a[0]) {
        target = PyUnicode_FromStringAndSize(a + 1, (Py_ssize_t)n - 2);
    } else if (n == 0) {
        target = PyUnicode_FromString("~");
    } else if (strcmp(a, "-") == 0) {
        if (prev_dir == NULL) {
            magics_usage_error("%%cd -: there is no previous directory yet");
            goto error;
        }
        target = Py_NewRef(prev_dir);
    } else if (a[0] == '-') {
        magics_usage_error("%%cd: unknown option %s. Usage: %%cd [-q] [directory | -]", a);
        goto error;
    } else {
        target = PyUnicode_FromString(a);
    }
    if (target == NULL)
        goto error;
    PyObject *path_mod = PyObject_GetAttrString(os, "path");
    if (path_mod == NULL)
        goto error;
    Py_SETREF(target, PyObject_CallMethod(path_mod, "expanduser", "(O)", target));
    Py_DECREF(path_mod);
    old = target ? PyObject_CallMethod(os, "getcwd", NULL) : NULL;
    if (old == NULL)
        goto error;
    r = PyObject_CallMethod(os, "chdir", "(O)", target);
    if (r == NULL) {
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            PyObject *t, *v, *tb;
            PyErr_Fetch(&t, &v, &tb);
            PyErr_NormalizeException(&t, &v, &tb);
            PyObject *s = v ? PyObject_Str(v) : NULL;
            const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
            magics_usage_error("%%cd: %s", msg ? msg : "cannot change directory");
            Py_XDECREF(s);
            Py_XDECREF(t);
            Py_XDECREF(v);
            Py_XDECREF(tb);
        }
        goto error;
    }
    Py_XSETREF(prev_dir, Py_NewRef(old));
    now = PyObject_CallMethod(os, "getcwd", NULL);
    if (now == NULL)
        goto error;
    if (!quiet) {
        if (write_obj(now) < 0 || magics_write_stdout("\n") < 0)
            goto error;
    }
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(os);
    Py_XDECREF(arg);
    Py_XDECREF(target);
    Py_XDECREF(old);
    Py_XDECREF(now);
    Py_XDECREF(r);
    return result;
}

/* ---- %env --------------------------------------------------------------------- */

/* %env: the environment as a dict (likely secrets hidden); %env VAR: its
 * value; %env VAR=value or %env VAR value: sets it. */
static PyObject *m_env(PyObject *line, PyObject *cell)
{
    PyObject *os = NULL, *os_environ = NULL, *arg = NULL, *result = NULL;
    os = PyImport_ImportModule("os");
    os_environ = os ? PyObject_GetAttrString(os, "environ") : NULL;
    arg = os_environ ? stripped(line) : NULL;
    if (arg == NULL)
        goto error;
    const char *a = PyUnicode_AsUTF8(arg);
    if (a == NULL)
        goto error;
    if (*a == '\0') { /* the whole environment */
        PyObject *env = PyDict_New(), *items = env ? PyMapping_Items(os_environ) : NULL;
        if (items == NULL) {
            Py_XDECREF(env);
            goto error;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
            PyObject *k = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
            PyObject *v = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
            PyObject *low = PyObject_CallMethod(k, "lower", NULL);
            const char *l = low ? PyUnicode_AsUTF8(low) : NULL;
            PyObject *hidden = NULL;
            if (l && (strstr(l, "key") || strstr(l, "token") || strstr(l, "secret")))
                hidden = PyUnicode_FromString("<hidden>");
            int bad = l == NULL || PyDict_SetItem(env, k, hidden ? hidden : v) < 0;
            Py_XDECREF(low);
            Py_XDECREF(hidden);
            if (bad) {
                Py_DECREF(items);
                Py_DECREF(env);
                goto error;
            }
        }
        Py_DECREF(items);
        result = env;
        goto error;
    }
    const char *eq = strchr(a, '=');
    const char *sp = a;
    while (*sp && !isspace((unsigned char)*sp))
        sp++;
    if (eq == NULL && *sp == '\0') { /* %env VAR */
        result = PyObject_GetItem(os_environ, arg);
        if (result == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
            magics_usage_error("Environment does not have key: %s", a);
        }
        goto error;
    }
    /* %env VAR=value (split at the first '=') or %env VAR value */
    const char *split = eq ? eq : sp;
    const char *vs = split + 1;
    const char *ke = split;
    while (ke > a && isspace((unsigned char)ke[-1]))
        ke--;
    while (isspace((unsigned char)*vs))
        vs++;
    for (const char *c = a; c < ke; c++) {
        if (isspace((unsigned char)*c)) {
            magics_usage_error("refusing to set env var with whitespace: '%.*s'. "
                               "Usage: %%env VAR=value",
                               (int)(ke - a), a);
            goto error;
        }
    }
    if (ke == a) {
        magics_usage_error("%%env: missing variable name. Usage: %%env VAR=value");
        goto error;
    }
    PyObject *key = PyUnicode_FromStringAndSize(a, ke - a);
    PyObject *val = key ? PyUnicode_FromString(vs) : NULL;
    int bad = val == NULL || PyObject_SetItem(os_environ, key, val) < 0;
    if (!bad) {
        PyObject *msg = PyUnicode_FromFormat("env: %U=%U\n", key, val);
        bad = msg == NULL || write_obj(msg) < 0;
        Py_XDECREF(msg);
    }
    Py_XDECREF(key);
    Py_XDECREF(val);
    if (!bad)
        result = Py_NewRef(Py_None);
error:
    Py_XDECREF(os);
    Py_XDECREF(os_environ);
    Py_XDECREF(arg);
    return result;
}

/* ---- %who, %who_ls, %whos ------------------------------------------------------- */

/* %who_ls [type ...]: a sorted list of the user's variable names. */
static PyObject *m_who_ls(PyObject *line, PyObject *cell)
{
    PyObject *types = words(line);
    if (types == NULL)
        return NULL;
    PyObject *names = user_names(types);
    Py_DECREF(types);
    return names;
}

static int print_empty(PyObject *types)
{
    return magics_write_stdout(PyList_GET_SIZE(types) ? "No variables match your requested type.\n"
                                                      : "Interactive namespace is empty.\n");
}

/* %who [type ...]: the user's variable names, tab separated, 9 a line. */
static PyObject *m_who(PyObject *line, PyObject *cell)
{
    PyObject *types = words(line), *names = NULL, *text = NULL, *result = NULL;
    if (types == NULL)
        return NULL;
    names = user_names(types);
    if (names == NULL)
        goto error;
    if (PyList_GET_SIZE(names) == 0) {
        if (print_empty(types) == 0)
            result = Py_NewRef(Py_None);
        goto error;
    }
    text = PyUnicode_FromString("");
    for (Py_ssize_t i = 0; text && i < PyList_GET_SIZE(names); i++) {
        int eol = i % 9 == 8;
        PyObject *piece =
            PyUnicode_FromFormat("%U\t %s", PyList_GET_ITEM(names, i), eol ? "\n" : "");
        if (piece == NULL) {
            Py_CLEAR(text);
            break;
        }
        PyUnicode_Append(&text, piece);
        Py_DECREF(piece);
    }
    if (text == NULL || write_obj(text) < 0 || magics_write_stdout("\n") < 0)
        goto error;
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(types);
    Py_XDECREF(names);
    Py_XDECREF(text);
    return result;
}

/* The Data/Info column of %whos for v: a length for dict/list/tuple, a
 * summary for NumPy arrays, else str(v) on one line with its middle cut
 * past 50 characters. Returns a new str or NULL. */
static PyObject *data_info(PyObject *v)
{
    const char *tn = short_type_name(v);
    if (strcmp(tn, "dict") == 0 || strcmp(tn, "list") == 0 || strcmp(tn, "tuple") == 0) {
        Py_ssize_t n = PyObject_Length(v);
        if (n < 0)
            return NULL;
        return PyUnicode_FromFormat("n=%zd", n);
    }
    if (strcmp(tn, "ndarray") == 0 && PyDict_GetItemString(PyImport_GetModuleDict(), "numpy")) {
        PyObject *shape = PyObject_GetAttrString(v, "shape");
        PyObject *size = shape ? PyObject_GetAttrString(v, "size") : NULL;
        PyObject *isz = size ? PyObject_GetAttrString(v, "itemsize") : NULL;
        PyObject *dtype = isz ? PyObject_GetAttrString(v, "dtype") : NULL;
        PyObject *nbytes = dtype ? PyNumber_Multiply(size, isz) : NULL;
        PyObject *sh = nbytes ? PyObject_Str(shape) : NULL, *res = NULL;
        Py_ssize_t nb = sh ? PyLong_AsSsize_t(nbytes) : -1;
        if (sh && !(nb == -1 && PyErr_Occurred())) {
            /* (3, 4) -> 3x4 */
            PyObject *a = PyObject_CallMethod(sh, "replace", "ss", ",", "");
            PyObject *b = a ? PyObject_CallMethod(a, "replace", "ss", " ", "x") : NULL;
            PyObject *c = b ? PySequence_GetSlice(b, 1, PyUnicode_GET_LENGTH(b) - 1) : NULL;
            if (c)
                res =
                    PyUnicode_FromFormat("%U: %S elems, type `%S`, %zd bytes", c, size, dtype, nb);
            if (res && nb >= 100000) {
                PyObject *f = PyFloat_FromDouble(nb < 1048576 ? nb / 1024.0 : nb / 1048576.0);
                PyObject *more =
                    f ? PyUnicode_FromFormat(" (%R %s)", f, nb < 1048576 ? "kb" : "Mb") : NULL;
                if (more)
                    PyUnicode_Append(&res, more);
                else
                    Py_CLEAR(res);
                Py_XDECREF(more);
                Py_XDECREF(f);
            }
            Py_XDECREF(a);
            Py_XDECREF(b);
            Py_XDECREF(c);
        }
        Py_XDECREF(shape);
        Py_XDECREF(size);
        Py_XDECREF(isz);
        Py_XDECREF(dtype);
        Py_XDECREF(nbytes);
        Py_XDECREF(sh);
        return res;
    }
    PyObject *s = PyObject_Str(v);
    if (s == NULL) {
        PyErr_Clear();
        return PyUnicode_FromFormat("<object with id %p (str() failed)>", (void *)v);
    }
    Py_SETREF(s, PyObject_CallMethod(s, "replace", "ss", "\n", "\\n"));
    if (s == NULL || PyUnicode_GET_LENGTH(s) < 50)
        return s;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    PyObject *head = PyUnicode_Substring(s, 0, 25);
    PyObject *tail = head ? PyUnicode_Substring(s, n - 25, n) : NULL;
    PyObject *res = tail ? PyUnicode_FromFormat("%U<...>%U", head, tail) : NULL;
    Py_XDECREF(head);
    Py_XDECREF(tail);
    Py_DECREF(s);
    return res;
}

/* %whos [type ...]: a Variable / Type / Data/Info table. */
static PyObject *m_whos(PyObject *line, PyObject *cell)
{
    PyObject *types = words(line), *names = NULL, *tnames = NULL, *text = NULL;
    PyObject *result = NULL;
    if (types == NULL)
        return NULL;
    names = user_names(types);
    tnames = names ? PyList_New(0) : NULL;
    if (tnames == NULL)
        goto error;
    if (PyList_GET_SIZE(names) == 0) {
        if (print_empty(types) == 0)
            result = Py_NewRef(Py_None);
        goto error;
    }
    PyObject *ns = interp_user_ns();
    Py_ssize_t vw = 8, tw = 4; /* len("Variable"), len("Type") */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(names); i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        PyObject *v = PyDict_GetItemWithError(ns, name);
        if (v == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, name);
            goto error;
        }
        PyObject *tn = PyUnicode_FromString(short_type_name(v));
        if (tn == NULL || PyList_Append(tnames, tn) < 0) {
            Py_XDECREF(tn);
            goto error;
        }
        if (PyUnicode_GET_LENGTH(name) > vw)
            vw = PyUnicode_GET_LENGTH(name);
        if (PyUnicode_GET_LENGTH(tn) > tw)
            tw = PyUnicode_GET_LENGTH(tn);
        Py_DECREF(tn);
    }
    vw += 3;
    tw += 3;
    {
        PyObject *vl = PyUnicode_FromString("Variable"), *tl = PyUnicode_FromString("Type");
        PyObject *vp = vl ? PyObject_CallMethod(vl, "ljust", "n", vw) : NULL;
        PyObject *tp = tl && vp ? PyObject_CallMethod(tl, "ljust", "n", tw) : NULL;
        text = tp ? PyUnicode_FromFormat("%U%U Data/Info\n", vp, tp) : NULL;
        Py_XDECREF(vl);
        Py_XDECREF(tl);
        Py_XDECREF(vp);
        Py_XDECREF(tp);
        if (text == NULL)
            goto error;
    }
    {
        PyObject *dash = PyUnicode_FromString("-"), *rule = NULL;
        rule = dash ? PySequence_Repeat(dash, vw + tw + 10) : NULL;
        Py_XDECREF(dash);
        if (rule == NULL)
            goto error;
        PyUnicode_Append(&text, rule);
        Py_DECREF(rule);
        if (text == NULL)
            goto error;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(names); i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        PyObject *v = PyDict_GetItemWithError(ns, name); /* present: checked above */
        PyObject *info = v ? data_info(v) : NULL;
        PyObject *vn = info ? PyObject_CallMethod(name, "ljust", "n", vw) : NULL;
        PyObject *tn =
            vn ? PyObject_CallMethod(PyList_GET_ITEM(tnames, i), "ljust", "n", tw) : NULL;
        PyObject *row = tn ? PyUnicode_FromFormat("\n%U%U %U", vn, tn, info) : NULL;
        Py_XDECREF(info);
        Py_XDECREF(vn);
        Py_XDECREF(tn);
        if (row == NULL)
            goto error;
        PyUnicode_Append(&text, row);
        Py_DECREF(row);
        if (text == NULL)
            goto error;
    }
    if (write_obj(text) < 0 || magics_write_stdout("\n") < 0)
        goto error;
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(types);
    Py_XDECREF(names);
    Py_XDECREF(tnames);
    Py_XDECREF(text);
    return result;
}

/* ---- %reset -------------------------------------------------------------------- */

/* Kept by %reset: the module's dunder names and the kernel's history
 * objects, which are emptied instead. */
static int kept_name(const char *name)
{
    size_t n = strlen(name);
    if (n > 4 && strncmp(name, "__", 2) == 0 && strcmp(name + n - 2, "__") == 0)
        return 1;
    return strcmp(name, "In") == 0 || strcmp(name, "Out") == 0 || strcmp(name, "_ih") == 0 ||
           strcmp(name, "_oh") == 0 || strcmp(name, "_dh") == 0;
}

/* Deletes the user's names (all = 1) or only the output history (_, __,
 * ___, _N and Out). Returns the number deleted, or -1 with an exception. */
static Py_ssize_t clear_namespace(int all)
{
    PyObject *ns = interp_user_ns(), *keys = PyDict_Keys(ns), *empty = NULL;
    Py_ssize_t deleted = 0;
    if (keys == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : "?";
        if (name == NULL)
            goto error;
        if (kept_name(name))
            continue;
        if (!all) { /* output history only: _, __, ___ and _<digits> */
            size_t j = 0;
            while (name[j] == '_')
                j++;
            int digits = name[j] != '\0' && strspn(name + j, "0123456789") == strlen(name + j);
            if (!((j >= 1 && j <= 3 && name[j] == '\0') || (j == 1 && digits)))
                continue;
        }
        if (PyDict_DelItem(ns, k) < 0)
            goto error;
        deleted++;
    }
    Py_DECREF(keys);
    keys = NULL;
    PyObject *out = PyDict_GetItemString(ns, "Out");
    if (out && PyDict_Check(out))
        PyDict_Clear(out);
    empty = PyUnicode_FromString("");
    if (empty == NULL)
        goto error;
    static const char *const blanks[] = {"_", "__", "___", "_i", "_ii", "_iii"};
    for (size_t i = 0; i < sizeof blanks / sizeof blanks[0]; i++) {
        if ((all || i < 3) && PyDict_GetItemString(ns, blanks[i]) == NULL &&
            PyDict_SetItemString(ns, blanks[i], empty) < 0)
            goto error;
    }
    Py_DECREF(empty);
    return deleted;
error:
    Py_XDECREF(keys);
    Py_XDECREF(empty);
    return -1;
}

/* Asks "Proceed (y/[n])?" through input(). Returns 1 for yes, 0 for no, or
 * -1 with an exception (a UsageError when the frontend has no stdin). */
static int confirm(void)
{
    PyObject *builtins = PyImport_ImportModule("builtins");
    PyObject *ans = builtins ? PyObject_CallMethod(builtins, "input", "s",
                                                   "Once deleted, variables cannot be "
                                                   "recovered. Proceed (y/[n])? ")
                             : NULL;
    Py_XDECREF(builtins);
    if (ans == NULL) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        PyObject *kmod = PyImport_ImportModule("_pyrometer_kernel");
        PyObject *nostdin = kmod ? PyObject_GetAttrString(kmod, "StdinNotImplementedError") : NULL;
        int match = nostdin && PyErr_GivenExceptionMatches(t, nostdin);
        Py_XDECREF(kmod);
        Py_XDECREF(nostdin);
        PyErr_Clear();
        PyErr_Restore(t, v, tb);
        if (match) {
            PyErr_Clear();
            magics_usage_error("%%reset asks for confirmation, and this frontend does not "
                               "accept input. Use %%reset -f to delete without asking.");
        }
        return -1;
    }
    const char *a = PyUnicode_Check(ans) ? PyUnicode_AsUTF8(ans) : NULL;
    int yes = a && (a[0] == 'y' || a[0] == 'Y');
    Py_DECREF(ans);
    return yes;
}

/* %reset [-f] [-s] [out]: deletes the user's variables (or, with `out`, the
 * output history). Without -f it asks first. */
static PyObject *m_reset(PyObject *line, PyObject *cell)
{
    PyObject *ws = words(line);
    int force = 0, out_only = 0;
    if (ws == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ws); i++) {
        const char *w = PyUnicode_AsUTF8(PyList_GET_ITEM(ws, i));
        if (w == NULL) {
            Py_DECREF(ws);
            return NULL;
        }
        if (w[0] == '-' && w[1] != '\0' && strspn(w + 1, "fs") == strlen(w + 1)) {
            force |= strchr(w, 'f') != NULL; /* -s (soft) is what we always do */
        } else if (strcmp(w, "out") == 0) {
            out_only = 1;
        } else {
            Py_DECREF(ws);
            return magics_usage_error("%%reset: unknown argument '%s'. Usage: %%reset [-f] [-s] "
                                      "[out]",
                                      w);
        }
    }
    Py_DECREF(ws);
    if (!force) {
        int yes = confirm();
        if (yes < 0)
            return NULL;
        if (!yes) {
            if (magics_write_stdout("Nothing done.\n") < 0)
                return NULL;
            Py_RETURN_NONE;
        }
    }
    if (clear_namespace(!out_only) < 0)
        return NULL;
    if (out_only && magics_write_stdout("Flushing output cache\n") < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- %matplotlib ------------------------------------------------------------ */

/* %matplotlib [inline]: figures are shown inline (the only backend here). */
static PyObject *m_matplotlib(PyObject *line, PyObject *cell)
{
    PyObject *arg = stripped(line);
    if (arg == NULL)
        return NULL;
    const char *a = PyUnicode_AsUTF8(arg);
    if (a == NULL) {
        Py_DECREF(arg);
        return NULL;
    }
    int none = *a == '\0';
    if (strcmp(a, "-l") == 0 || strcmp(a, "--list") == 0) {
        Py_DECREF(arg);
        if (magics_write_stdout("Available matplotlib backends: ['inline']\n") < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (!none && strcmp(a, "inline") != 0) {
        PyObject *r = magics_usage_error("%%matplotlib %s: pyrometer shows figures inline only. "
                                         "Usage: %%matplotlib inline",
                                         a);
        Py_DECREF(arg);
        return r;
    }
    Py_DECREF(arg);
    if (stdmagics_hooks_inline() < 0)
        return NULL;
    if (none && magics_write_stdout("Using matplotlib backend: inline\n") < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- %magic -------------------------------------------------------------------- */

/* %magic: every magic of the registry, line and cell forms together, with
 * its one-line summary; %name? gives the whole help. */
static PyObject *m_magic(PyObject *line, PyObject *cell)
{
    PyObject *text = PyUnicode_FromString("Available magics (%name? or %name -h for the whole "
                                          "help):\n\n");
    PyObject *lines = magics_names(0), *cells = lines ? magics_names(1) : NULL;
    PyObject *all = cells ? PySequence_Concat(lines, cells) : NULL;
    PyObject *seen = all ? PySet_New(NULL) : NULL, *result = NULL;
    if (text == NULL || seen == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); i++) {
        PyObject *name = PyList_GET_ITEM(all, i);
        int dup = PySet_Contains(seen, name);
        if (dup < 0 || (!dup && PySet_Add(seen, name) < 0))
            goto error;
        if (dup)
            continue;
        int is_line = PySequence_Contains(lines, name), is_cell = PySequence_Contains(cells, name);
        const char *n = PyUnicode_AsUTF8(name);
        PyObject *sum = n ? magics_summary(n) : NULL;
        if (sum == NULL || is_line < 0 || is_cell < 0) {
            Py_XDECREF(sum);
            goto error;
        }
        PyObject *entry = PyUnicode_FromFormat("%s%s%s%s%s\n    %U\n\n", is_line ? "%" : "",
                                               is_line ? n : "", is_line && is_cell ? ", " : "",
                                               is_cell ? "%%" : "", is_cell ? n : "", sum);
        Py_DECREF(sum);
        PyUnicode_AppendAndDel(&text, entry);
        if (text == NULL)
            goto error;
    }
    if (write_obj(text) < 0)
        goto error;
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(text);
    Py_XDECREF(lines);
    Py_XDECREF(cells);
    Py_XDECREF(all);
    Py_XDECREF(seen);
    return result;
}

/* ---- registration ------------------------------------------------------------- */

int stdmagics_register(void)
{
    static const struct {
        const char *name;
        magic_handler line;
        const char *help;
    } line_magics[] = {
        {"cd", m_cd,
         "%cd [-q] [DIRECTORY | -]\n\n"
         "Change the working directory and print the new one.\n\n"
         "With no directory it goes home; with - to the directory before the last %cd.\n\n"
         "Options:\n"
         "  -q                     do not print the new directory\n\n"
         "Example:\n"
         "  %cd /tmp\n"
         "  %cd -"},
        {"env", m_env,
         "%env [VAR | VAR=VALUE | VAR VALUE]\n\n"
         "Get, set or list environment variables.\n\n"
         "%env alone returns the environment as a dict (values that look like secrets\n"
         "hidden); %env VAR returns one variable; %env VAR=VALUE or %env VAR VALUE sets\n"
         "it, for this process and the commands it starts. It has no options.\n\n"
         "Example:\n"
         "  %env OMP_NUM_THREADS=4\n"
         "  %env HOME"},
        {"who", m_who,
         "%who [TYPE ...]\n\n"
         "Print the names of the user's variables.\n\n"
         "Names starting with _ and the kernel's In and Out are left out. With type\n"
         "names, only variables of those types are shown. It has no options.\n\n"
         "Example:\n"
         "  %who int str"},
        {"who_ls", m_who_ls,
         "%who_ls [TYPE ...]\n\n"
         "Return the names of the user's variables as a sorted list.\n\n"
         "The same selection as %who. It has no options.\n\n"
         "Example:\n"
         "  names = %who_ls function"},
        {"whos", m_whos,
         "%whos [TYPE ...]\n\n"
         "Print a table of the user's variables: name, type and data.\n\n"
         "The same selection as %who; arrays show their shape and size. It has no\n"
         "options.\n\n"
         "Example:\n"
         "  %whos ndarray"},
        {"reset", m_reset,
         "%reset [-f] [-s] [out]\n\n"
         "Delete the user's variables, or with out only the output history.\n\n"
         "Without -f it asks first (an input request).\n\n"
         "Options:\n"
         "  -f                     do not ask for confirmation\n"
         "  -s                     accepted for IPython's sake: the reset is always soft\n"
         "  out                    clear Out and _N only\n\n"
         "Example:\n"
         "  %reset -f"},
        {"magic", m_magic,
         "%magic\n\n"
         "List every magic with a one-line summary.\n\n"
         "It has no options; %name? shows one magic's whole help.\n\n"
         "Example:\n"
         "  %magic"},
        {"matplotlib", m_matplotlib,
         "%matplotlib [inline | -l]\n\n"
         "Show matplotlib figures inline, below the cell.\n\n"
         "Inline is the default here, so no set-up line is needed; %matplotlib inline\n"
         "also overrides MPLBACKEND.\n\n"
         "Options:\n"
         "  -l, --list             list the available backends\n\n"
         "Example:\n"
         "  %matplotlib inline"},
    };
    if (timing_register() < 0)
        return -1;
    for (size_t i = 0; i < sizeof line_magics / sizeof line_magics[0]; i++) {
        if (magics_register(line_magics[i].name, line_magics[i].line, NULL, line_magics[i].help) <
            0) {
            PyErr_Format(PyExc_RuntimeError, "cannot register %%%s", line_magics[i].name);
            return -1;
        }
    }
    return stdmagics_hooks_install();
}

void stdmagics_after_cell(void)
{
    stdmagics_hooks_flush_figures();
}
