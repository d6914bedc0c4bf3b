/* magics.c - the magic registry (a small table: name -> line handler, cell
 * handler), the entry points that transformed cells call
 * (__pyrometer__.line_magic and friends), and the built-in magics. */
#include "magics.h"

#include <stdarg.h>
#include <string.h>

#include "interp.h"
#include "introspect.h"
#include "stdmagics.h"

#define MAX_MAGICS 64

typedef struct {
    char name[32];
    magic_handler line, cell; /* built-in handlers, or NULL */
    PyObject *py;             /* owned: an extension magic, or NULL */
    int py_line, py_cell;
    const char *help;
} magic_entry;

/* The registry and the payload of the running cell. Protected by the GIL. */
static magic_entry table[MAX_MAGICS];
static int n_magics;
static json_t *payload;

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

void magics_add_payload(json_t *item)
{
    if (payload == NULL)
        payload = json_array();
    json_array_append_new(payload, item);
}

json_t *magics_take_payload(void)
{
    json_t *p = payload;
    payload = NULL;
    return p;
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

static PyObject *call_magic(const char *name, PyObject *line, PyObject *cell)
{
    char names[2048];
    magic_entry *e = find(name);
    int is_cell = cell != NULL;
    if (e == NULL || !(is_cell ? (e->cell || e->py_cell) : (e->line || e->py_line))) {
        list_names(names, sizeof names, is_cell);
        if (e != NULL)
            return magics_usage_error("%s%s is a %s magic, not a %s magic. Available %s magics: %s",
                                      is_cell ? "%%" : "%", name, is_cell ? "line" : "cell",
                                      is_cell ? "cell" : "line", is_cell ? "cell" : "line", names);
        return magics_usage_error("%s magic `%s%s` not found. Available %s magics: %s",
                                  is_cell ? "Cell" : "Line", is_cell ? "%%" : "%", name,
                                  is_cell ? "cell" : "line", names);
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
    PyObject *rc = PyObject_CallMethod(os, "system", "O", cmd);
    if (rc == NULL) {
        Py_DECREF(os);
        return NULL;
    }
    PyObject *code = PyObject_CallMethod(os, "waitstatus_to_exitcode", "O", rc);
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
    PyObject *out = PyObject_CallMethod(sp, "getoutput", "O", cmd);
    Py_DECREF(sp);
    if (out == NULL)
        return NULL;
    PyObject *lines = PyObject_CallMethod(out, "splitlines", NULL);
    Py_DECREF(out);
    return lines;
}

/* obj? and obj??: the same text as inspect_request, as a `page` payload. */
static PyObject *k_inspect(PyObject *self, PyObject *args)
{
    const char *name;
    int level;
    if (!PyArg_ParseTuple(args, "si:inspect", &name, &level))
        return NULL;
    char *text = introspect_text(name, level);
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
    magics_add_payload(
        json_pack("{s:s, s:{s:s}, s:i}", "source", "page", "data", "text/plain", text, "start", 0));
    free(text);
    Py_RETURN_NONE;
}

static PyMethodDef magic_methods[] = {
    {"line_magic", k_line_magic, METH_VARARGS, "line_magic(name, line): run %name line."},
    {"cell_magic", k_cell_magic, METH_VARARGS, "cell_magic(name, line, cell): run %%name."},
    {"system", k_system, METH_O, "system(cmd): run a shell command (!cmd)."},
    {"getoutput", k_getoutput, METH_O, "getoutput(cmd): output lines of a shell command."},
    {"inspect", k_inspect, METH_VARARGS, "inspect(name, level): obj? and obj??."},
    {NULL, NULL, 0, NULL},
};

/* ---- built-in magics ------------------------------------------------------ */

static PyObject *m_lsmagic(PyObject *line, PyObject *cell)
{
    char lines[2048], cells[2048];
    list_names(lines, sizeof lines, 0);
    list_names(cells, sizeof cells, 1);
    PySys_WriteStdout("Available line magics:\n%s\n\nAvailable cell magics:\n%s\n", lines, cells);
    Py_RETURN_NONE;
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
        return magics_usage_error("%%load_ext: missing module name. Usage: %%load_ext pyrometer");
    return magics_usage_error("%%load_ext: pyrometer does not load IPython extensions "
                              "(\"%s\"); the pyrometer magics are built in",
                              name);
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

int magics_install(PyObject *kmod)
{
    for (PyMethodDef *d = magic_methods; d->ml_name; d++) {
        PyObject *f = PyCFunction_New(d, NULL);
        if (f == NULL || PyModule_AddObject(kmod, d->ml_name, f) < 0) {
            Py_XDECREF(f);
            return -1;
        }
    }
    if (magics_register("lsmagic", m_lsmagic, NULL, "List the available magics.") < 0 ||
        magics_register("load_ext", m_load_ext, NULL, "Accepts pyrometer (built in).") < 0 ||
        magics_register("pwd", m_pwd, NULL, "Return the current working directory.") < 0)
        return -1;
    if (stdmagics_register() < 0)
        return -1;

    /* The extension's magics, through the same registry. */
    PyObject *ext = PyImport_ImportModule("pyrometer");
    if (ext == NULL)
        return -1;
    PyObject *magics = PyObject_GetAttrString(ext, "MAGICS");
    Py_DECREF(ext);
    if (magics == NULL)
        return -1;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(magics, &pos, &key, &value)) {
        const char *kinds;
        PyObject *fn;
        if (!PyArg_ParseTuple(value, "sO", &kinds, &fn) ||
            magics_register_py(PyUnicode_AsUTF8(key), kinds, fn) < 0) {
            Py_DECREF(magics);
            return -1;
        }
    }
    Py_DECREF(magics);
    return 0;
}

void magics_after_cell(void)
{
    stdmagics_after_cell();
}
