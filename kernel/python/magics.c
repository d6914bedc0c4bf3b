/* magics.c - the magic registry (a small table: name -> line handler, cell
 * handler), the entry points that transformed cells call
 * (__pyrometer__.line_magic and friends), and the built-in magics. obj? is
 * introspect.c's entry point, not the registry's. */
#include "magics.h"

#include <stdarg.h>
#include <string.h>

#include "interp.h"
#include "ipybridge.h"
#include "session.h"

#define MAX_MAGICS 64

typedef struct {
    char name[32];
    magic_handler line, cell; /* built-in handlers, or NULL */
    PyObject *py;             /* owned: an extension magic, or NULL */
    PyObject *doc;            /* owned str: an extension magic's help, or NULL */
    int py_line, py_cell;
    const char *help; /* a built-in magic's help text */
} magic_entry;

/* The registry. Protected by the GIL. */
static magic_entry table[MAX_MAGICS];
static int n_magics;

static magic_entry *find(const char *name)
{
    for (int i = 0; i < n_magics; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

static magic_entry *add(const char *name)
{
    magic_entry *e = find(name);
    if (e != NULL)
        return e;
    if (n_magics == MAX_MAGICS || strlen(name) >= sizeof table[0].name)
        return NULL;
    e = &table[n_magics++];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    return e;
}

int magics_register(const char *name, magic_handler line, magic_handler cell, const char *help)
{
    magic_entry *e = add(name);
    if (e == NULL)
        return -1;
    e->line = line;
    e->cell = cell;
    e->help = help;
    return 0;
}

int magics_register_py(const char *name, const char *kinds, PyObject *callable)
{
    magic_entry *e = add(name);
    if (e == NULL) {
        PyErr_Format(PyExc_RuntimeError, "cannot register magic %s", name);
        return -1;
    }
    Py_XSETREF(e->py, Py_NewRef(callable));
    e->py_line = strstr(kinds, "line") != NULL;
    e->py_cell = strstr(kinds, "cell") != NULL;
    e->line = e->cell = NULL;
    return 0;
}

PyObject *magics_usage_error_type(void)
{
    PyObject *mod = PyImport_ImportModule("pyrometer");
    PyObject *exc = mod ? PyObject_GetAttrString(mod, "UsageError") : NULL;
    Py_XDECREF(mod);
    return exc;
}

PyObject *magics_usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    PyObject *exc = magics_usage_error_type();
    if (exc == NULL)
        return NULL;
    PyErr_SetString(exc, msg);
    Py_DECREF(exc);
    return NULL;
}

int magics_write_stdout(const char *text)
{
    PyObject *out = PySys_GetObject("stdout"); /* borrowed */
    if (out == NULL || out == Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "lost sys.stdout");
        return -1;
    }
    return PyFile_WriteString(text, out);
}

/* Lists the names of every line (cell) magic, "%a %b ...". */
static void list_names(char *buf, size_t len, int cell)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < n_magics && o + 40 < len; i++) {
        int has = cell ? (table[i].cell || table[i].py_cell) : (table[i].line || table[i].py_line);
        if (has)
            o += (size_t)snprintf(buf + o, len - o, "%s%s%s", o ? " " : "", cell ? "%%" : "%",
                                  table[i].name);
    }
}

PyObject *magics_names(int cell)
{
    PyObject *list = PyList_New(0);
    for (int i = 0; list != NULL && i < n_magics; i++) {
        int has = cell ? (table[i].cell || table[i].py_cell) : (table[i].line || table[i].py_line);
        if (!has)
            continue;
        PyObject *name = PyUnicode_FromString(table[i].name);
        if (name == NULL || PyList_Append(list, name) < 0) {
            Py_XDECREF(name);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(name);
    }
    return list;
}

/* display(bundle) for extension magics: publishes a raw MIME bundle. */
static PyObject *display_bundle(PyObject *self, PyObject *bundle)
{
    if (interp_display(bundle, 1, NULL, NULL, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef display_bundle_def = {"display", display_bundle, METH_O,
                                         "Publish a MIME bundle as display_data."};

/* 1 when line asks for help: "-h" or "--help" alone. */
static int asks_help(PyObject *line)
{
    const char *l = PyUnicode_AsUTF8(line);
    if (l == NULL) {
        PyErr_Clear();
        return 0;
    }
    while (*l == ' ' || *l == '\t')
        l++;
    size_t n = strlen(l);
    while (n > 0 && (l[n - 1] == ' ' || l[n - 1] == '\t' || l[n - 1] == '\n'))
        n--;
    return (n == 2 && strncmp(l, "-h", 2) == 0) || (n == 6 && strncmp(l, "--help", 6) == 0);
}

static PyObject *call_magic(const char *name, PyObject *line, PyObject *cell)
{
    char names[2048];
    magic_entry *e = find(name);
    int is_cell = cell != NULL;
    if (e == NULL || !(is_cell ? (e->cell || e->py_cell) : (e->line || e->py_line))) {
        /* Not the kernel's: IPython's, if it has it (brought up now). */
        if (ipybridge_has_magic(name, is_cell))
            return ipybridge_run_magic(name, line, cell);
        list_names(names, sizeof names, is_cell);
        if (e != NULL)
            return magics_usage_error("%s%s is a %s magic, not a %s magic. Available %s magics: %s",
                                      is_cell ? "%%" : "%", name, is_cell ? "line" : "cell",
                                      is_cell ? "cell" : "line", is_cell ? "cell" : "line", names);
        return magics_usage_error("%s magic `%s%s` not found. Available %s magics: %s",
                                  is_cell ? "Cell" : "Line", is_cell ? "%%" : "%", name,
                                  is_cell ? "cell" : "line", names);
    }
    if (!is_cell && asks_help(line)) { /* %name -h: the magic's help */
        PyObject *doc = magics_help(name, 0);
        if (doc == NULL)
            return NULL;
        const char *t = PyUnicode_AsUTF8(doc);
        int rc = t ? magics_write_stdout(t) : -1;
        if (rc == 0 && t[0] != '\0' && t[strlen(t) - 1] != '\n')
            rc = magics_write_stdout("\n");
        Py_DECREF(doc);
        if (rc < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (e->py) {
        PyObject *display = PyCFunction_New(&display_bundle_def, NULL);
        if (display == NULL)
            return NULL;
        PyObject *r = PyObject_CallFunctionObjArgs(e->py, line, cell ? cell : Py_None,
                                                   interp_user_ns(), display, NULL);
        Py_DECREF(display);
        return r;
    }
    return is_cell ? e->cell(line, cell) : e->line(line, NULL);
}

PyObject *magics_help(const char *name, int cell)
{
    magic_entry *e = find(name);
    if (e != NULL && e->doc != NULL)
        return Py_NewRef(e->doc);
    if (e != NULL && e->help != NULL)
        return PyUnicode_FromString(e->help);
    PyObject *doc = ipybridge_magic_doc(name, cell);
    if (doc == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_KeyError, "no magic %s%s", cell ? "%%" : "%", name);
    return doc;
}

int magics_known(const char *name)
{
    return find(name) != NULL;
}

static PyObject *k_line_magic(PyObject *self, PyObject *args)
{
    const char *name;
    PyObject *line;
    if (!PyArg_ParseTuple(args, "sU:line_magic", &name, &line))
        return NULL;
    return call_magic(name, line, NULL);
}

static PyObject *k_cell_magic(PyObject *self, PyObject *args)
{
    const char *name;
    PyObject *line, *cell;
    if (!PyArg_ParseTuple(args, "sUU:cell_magic", &name, &line, &cell))
        return NULL;
    return call_magic(name, line, cell);
}

/* !cmd: runs through the shell; its output reaches fd 1/2, which the kernel
 * captures. Sets _exit_code like IPython. */
static PyObject *k_system(PyObject *self, PyObject *cmd)
{
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL)
        return NULL;
    PyObject *rc = PyObject_CallMethod(os, "system", "(O)", cmd);
    if (rc == NULL) {
        Py_DECREF(os);
        return NULL;
    }
    PyObject *code = PyObject_CallMethod(os, "waitstatus_to_exitcode", "(O)", rc);
    Py_DECREF(os);
    Py_DECREF(rc);
    if (code == NULL)
        return NULL;
    int bad = PyDict_SetItemString(interp_user_ns(), "_exit_code", code);
    Py_DECREF(code);
    if (bad)
        return NULL;
    Py_RETURN_NONE;
}

/* x = !cmd: the command's output as a list of lines. */
static PyObject *k_getoutput(PyObject *self, PyObject *cmd)
{
    PyObject *sp = PyImport_ImportModule("subprocess");
    if (sp == NULL)
        return NULL;
    PyObject *out = PyObject_CallMethod(sp, "getoutput", "(O)", cmd);
    Py_DECREF(sp);
    if (out == NULL)
        return NULL;
    PyObject *lines = PyObject_CallMethod(out, "splitlines", NULL);
    Py_DECREF(out);
    return lines;
}

static PyMethodDef magic_methods[] = {
    {"line_magic", k_line_magic, METH_VARARGS, "line_magic(name, line): run %name line."},
    {"cell_magic", k_cell_magic, METH_VARARGS, "cell_magic(name, line, cell): run %%name."},
    {"system", k_system, METH_O, "system(cmd): run a shell command (!cmd)."},
    {"getoutput", k_getoutput, METH_O, "getoutput(cmd): output lines of a shell command."},
    {NULL, NULL, 0, NULL},
};

/* ---- built-in magics ------------------------------------------------------ */

/* The one-line summary in a help text: the first line of its first
 * paragraph that is not a usage line (those start with %). */
static void summary_of(const char *help, char *buf, size_t len)
{
    const char *p = help;
    buf[0] = '\0';
    while (p && *p) {
        const char *end = strstr(p, "\n\n");
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (*p != '%' && plen > 0) {
            const char *nl = memchr(p, '\n', plen);
            size_t n = nl ? (size_t)(nl - p) : plen;
            snprintf(buf, len, "%.*s", (int)n, p);
            return;
        }
        p = end ? end + 2 : NULL;
    }
    snprintf(buf, len, "%s", help);
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
}

PyObject *magics_summary(const char *name)
{
    char buf[256];
    PyObject *doc = magics_help(name, 0);
    if (doc == NULL)
        return NULL;
    const char *t = PyUnicode_AsUTF8(doc);
    if (t == NULL) {
        Py_DECREF(doc);
        return NULL;
    }
    summary_of(t, buf, sizeof buf);
    Py_DECREF(doc);
    return PyUnicode_FromString(buf);
}

/* Appends "  %name   summary" for each line magic of the registry, or
 * "  %%name   summary" for each cell magic. */
static int list_with_summaries(PyObject **text, int cell)
{
    for (int i = 0; i < n_magics; i++) {
        magic_entry *e = &table[i];
        if (!(cell ? (e->cell || e->py_cell) : (e->line || e->py_line)))
            continue;
        char label[40], sum[256];
        snprintf(label, sizeof label, "%s%.*s", cell ? "%%" : "%", (int)(sizeof label - 3),
                 e->name);
        const char *help = NULL;
        if (e->doc)
            help = PyUnicode_AsUTF8(e->doc);
        else
            help = e->help;
        if (help == NULL) {
            PyErr_Clear();
            help = "";
        }
        summary_of(help, sum, sizeof sum);
        char row[320];
        snprintf(row, sizeof row, "  %-14s %s\n", label, sum);
        PyObject *l = PyUnicode_FromString(row);
        if (l == NULL)
            return -1;
        PyUnicode_Append(text, l);
        Py_DECREF(l);
        if (*text == NULL)
            return -1;
    }
    return 0;
}

/* %lsmagic: every magic with its one-line summary, then IPython's. */
static PyObject *m_lsmagic(PyObject *line, PyObject *cell)
{
    PyObject *text = PyUnicode_FromString("Available line magics:\n");
    if (text == NULL || list_with_summaries(&text, 0) < 0)
        goto error;
    PyUnicode_AppendAndDel(&text, PyUnicode_FromString("\nAvailable cell magics:\n"));
    if (text == NULL || list_with_summaries(&text, 1) < 0)
        goto error;
    PyObject *more = ipybridge_magics_text();
    if (more == NULL)
        goto error;
    PyUnicode_AppendAndDel(&text, more);
    if (text == NULL)
        goto error;
    PyUnicode_AppendAndDel(
        &text, PyUnicode_FromString("\n%name? or %name -h shows a magic's whole help.\n"));
    const char *t = text ? PyUnicode_AsUTF8(text) : NULL;
    if (t == NULL || magics_write_stdout(t) < 0)
        goto error;
    Py_DECREF(text);
    Py_RETURN_NONE;
error:
    Py_XDECREF(text);
    return NULL;
}

static PyObject *m_load_ext(PyObject *line, PyObject *cell)
{
    const char *name = PyUnicode_AsUTF8(line);
    if (name == NULL)
        return NULL;
    while (*name == ' ')
        name++;
    if (strncmp(name, "pyrometer", 9) == 0 && (name[9] == '\0' || name[9] == ' '))
        Py_RETURN_NONE; /* built in: its magics are already registered */
    if (*name == '\0')
        return magics_usage_error("%%load_ext: missing module name. Usage: %%load_ext MODULE");
    /* Any other extension is an IPython extension: IPython loads it. */
    return ipybridge_run_magic("load_ext", line, NULL);
}

static PyObject *m_pwd(PyObject *line, PyObject *cell)
{
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL)
        return NULL;
    PyObject *r = PyObject_CallMethod(os, "getcwd", NULL);
    Py_DECREF(os);
    return r;
}

static const char lsmagic_help[] =
    "%lsmagic\n"
    "\n"
    "List the available magics, each with a one-line summary.\n"
    "\n"
    "The kernel's own magics and pyrometer's profilers come first; where IPython is\n"
    "installed, the magics it adds (loaded on first use) follow by name.\n"
    "%name? or %name -h shows a magic's whole help.\n"
    "\n"
    "Example:\n"
    "  %lsmagic";

static const char load_ext_help[] =
    "%load_ext MODULE\n"
    "\n"
    "Load an IPython extension, as IPython does.\n"
    "\n"
    "%load_ext pyrometer is accepted and does nothing: the profilers are built in.\n"
    "Any other extension (autoreload, storemagic, a package's own) is loaded by\n"
    "IPython, which the kernel brings in the first time it is needed.\n"
    "\n"
    "Example:\n"
    "  %load_ext autoreload\n"
    "  %autoreload 2";

static const char pwd_help[] = "%pwd\n"
                               "\n"
                               "Return the current working directory as a string.\n"
                               "\n"
                               "Example:\n"
                               "  here = %pwd";

int magics_install(PyObject *kmod)
{
    for (PyMethodDef *d = magic_methods; d->ml_name; d++) {
        PyObject *f = PyCFunction_New(d, NULL);
        if (f == NULL || PyModule_AddObject(kmod, d->ml_name, f) < 0) {
            Py_XDECREF(f);
            return -1;
        }
    }
    if (magics_register("lsmagic", m_lsmagic, NULL, lsmagic_help) < 0 ||
        magics_register("load_ext", m_load_ext, NULL, load_ext_help) < 0 ||
        magics_register("pwd", m_pwd, NULL, pwd_help) < 0)
        return -1;
    return 0;
}

int magics_register_extension(void)
{
    PyObject *ext = PyImport_ImportModule("pyrometer");
    if (ext == NULL)
        return -1;
    PyObject *magics = PyObject_GetAttrString(ext, "MAGICS");
    PyObject *help = magics ? PyObject_GetAttrString(ext, "MAGIC_HELP") : NULL;
    Py_DECREF(ext);
    if (help == NULL || !PyDict_Check(magics) || !PyDict_Check(help)) {
        if (help != NULL)
            PyErr_SetString(PyExc_TypeError, "pyrometer.MAGICS and MAGIC_HELP must be dicts");
        Py_XDECREF(magics);
        Py_XDECREF(help);
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    int rc = 0;
    while (rc == 0 && PyDict_Next(magics, &pos, &key, &value)) {
        const char *kinds, *name = PyUnicode_AsUTF8(key);
        PyObject *fn;
        if (name == NULL || !PyArg_ParseTuple(value, "sO", &kinds, &fn) ||
            magics_register_py(name, kinds, fn) < 0) {
            rc = -1;
            break;
        }
        /* Its help: MAGIC_HELP's text, else the callable's docstring. */
        PyObject *doc = PyDict_GetItemWithError(help, key); /* borrowed */
        if (doc == NULL && PyErr_Occurred()) {
            rc = -1;
        } else if (doc != NULL) {
            Py_XSETREF(find(name)->doc, Py_NewRef(doc));
        } else {
            PyObject *d = PyObject_GetAttrString(fn, "__doc__");
            if (d != NULL && PyUnicode_Check(d))
                Py_XSETREF(find(name)->doc, d);
            else
                Py_XDECREF(d);
            PyErr_Clear();
        }
    }
    Py_DECREF(magics);
    Py_DECREF(help);
    return rc;
}
