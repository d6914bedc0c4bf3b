/* monitor.c - the sys.monitoring plumbing of the profilers' 3.12+ backends.
 *
 * Owns the callback type (an object whose vectorcall is a C function, so an
 * event costs CPython's dispatch and our function, nothing more) and the
 * calls into sys.monitoring made when a profiler starts and stops. The
 * event callbacks themselves live with each profiler's backend.
 */
#include "monitor.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- the callback type ------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall; /* the backend's C function */
} monitor_hook;

static PyMemberDef hook_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(monitor_hook, vectorcall), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static void hook_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyType_Slot hook_slots[] = {
    {Py_tp_dealloc, hook_dealloc},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, hook_members},
    {Py_tp_doc, "A pyrometer sys.monitoring callback (a C function)."},
    {0, NULL},
};

static PyType_Spec hook_spec = {
    .name = "pyrometer._MonitorHook",
    .basicsize = sizeof(monitor_hook),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = hook_slots,
};

/* Made once per process. Protected by the GIL. */
static PyTypeObject *hook_type;

/* Returns a new callback object calling fn, or NULL with an exception. */
static PyObject *hook_new(monitor_fn fn)
{
    if (hook_type == NULL) {
        hook_type = (PyTypeObject *)PyType_FromSpec(&hook_spec);
        if (hook_type == NULL)
            return NULL;
    }
    monitor_hook *h = PyObject_New(monitor_hook, hook_type);
    if (h == NULL)
        return NULL;
    h->vectorcall = (vectorcallfunc)fn;
    return (PyObject *)h;
}

/* ---- sys.monitoring calls ---------------------------------------------------------- */

/* Returns sys.monitoring (a new reference), or NULL with an exception.
 * Nothing is imported: the profilers start from code run in any globals,
 * which need not hold __builtins__. */
static PyObject *sys_monitoring(void)
{
    PyObject *mon = PySys_GetObject("monitoring"); /* borrowed */
    if (mon == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "sys.monitoring is missing");
        return NULL;
    }
    return Py_NewRef(mon);
}

/* Calls sys.monitoring.<name>(*args) built from fmt. Returns 0, or -1 with
 * an exception set. */
static int mon_call(const char *name, const char *fmt, ...)
{
    PyObject *mon = sys_monitoring();
    if (mon == NULL)
        return -1;
    PyObject *fn = PyObject_GetAttrString(mon, name);
    Py_DECREF(mon);
    if (fn == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    PyObject *args = Py_VaBuildValue(fmt, ap);
    va_end(ap);
    if (args == NULL) {
        Py_DECREF(fn);
        return -1;
    }
    PyObject *r = PyObject_Call(fn, args, NULL);
    Py_DECREF(fn);
    Py_DECREF(args);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The name the tool holding id registered (a new str), Py_None when free, or
 * NULL with an exception. */
static PyObject *holder(int id)
{
    PyObject *mon = sys_monitoring();
    if (mon == NULL)
        return NULL;
    PyObject *r = PyObject_CallMethod(mon, "get_tool", "i", id);
    Py_DECREF(mon);
    return r;
}

/* sys.monitoring.DISABLE (owned; set once). Protected by the GIL. */
static PyObject *disable_obj;

PyObject *monitor_disable(void)
{
    return disable_obj;
}

int monitor_claim(int id, const char *name, const char *magic)
{
    if (disable_obj == NULL) {
        PyObject *mon = sys_monitoring();
        if (mon == NULL)
            return -1;
        disable_obj = PyObject_GetAttrString(mon, "DISABLE");
        Py_DECREF(mon);
        if (disable_obj == NULL)
            return -1;
    }
    PyObject *who = holder(id);
    if (who == NULL)
        return -1;
    if (who == Py_None) {
        Py_DECREF(who);
        return mon_call("use_tool_id", "(is)", id, name);
    }
    PyObject *mod = PyImport_ImportModuleLevel("pyrometer", NULL, NULL, NULL, 0);
    PyObject *cls = mod ? PyObject_GetAttrString(mod, "UsageError") : NULL;
    Py_XDECREF(mod);
    if (cls == NULL) {
        PyErr_Clear();
        cls = Py_NewRef(PyExc_RuntimeError);
    }
    PyErr_Format(cls,
                 "%s: sys.monitoring tool id %d is held by %R (a debugger, coverage or another "
                 "profiler); stop that tool first, or free the id with "
                 "sys.monitoring.free_tool_id(%d)",
                 magic, id, who, id);
    Py_DECREF(cls);
    Py_DECREF(who);
    return -1;
}

int monitor_register(int id, int events, monitor_fn fn)
{
    PyObject *hook = hook_new(fn);
    if (hook == NULL)
        return -1;
    for (int ev = 0; ev < 31; ev++) {
        if (!(events & MONITOR_BIT(ev)))
            continue;
        if (mon_call("register_callback", "(iiO)", id, MONITOR_BIT(ev), hook) < 0) {
            Py_DECREF(hook);
            return -1;
        }
    }
    Py_DECREF(hook);
    return 0;
}

int monitor_set_events(int id, int events)
{
    return mon_call("set_events", "(ii)", id, events);
}

int monitor_set_local_events(int id, PyObject *code, int events)
{
    return mon_call("set_local_events", "(iOi)", id, code, events);
}

int monitor_release(int id, const char *name, int events, PyObject *const *codes, Py_ssize_t n)
{
    PyObject *exc = PyErr_GetRaisedException();
    int ours = 0;
    PyObject *who = holder(id);
    if (who == NULL) {
        PyErr_Clear();
        goto done;
    }
    if (who == Py_None) {
        /* Freed under us: on 3.12 and 3.13 free_tool_id() leaves the
         * callbacks and events in place, so take the id back to clear them. */
        if (mon_call("use_tool_id", "(is)", id, name) < 0) {
            PyErr_Clear();
            goto done;
        }
    } else if (!PyUnicode_Check(who) || PyUnicode_CompareWithASCIIString(who, name) != 0) {
        goto done; /* another tool's now: leave it alone */
    } else {
        ours = 1;
    }
    if (monitor_set_events(id, 0) < 0)
        PyErr_Clear();
    for (Py_ssize_t i = 0; i < n; i++) {
        if (monitor_set_local_events(id, codes[i], 0) < 0)
            PyErr_Clear();
    }
    for (int ev = 0; ev < 31; ev++) {
        if ((events & MONITOR_BIT(ev)) &&
            mon_call("register_callback", "(iiO)", id, MONITOR_BIT(ev), Py_None) < 0)
            PyErr_Clear();
    }
    if (mon_call("free_tool_id", "(i)", id) < 0)
        PyErr_Clear();
done:
    Py_XDECREF(who);
    PyErr_SetRaisedException(exc);
    return ours;
}

PyObject *monitor_missing(void)
{
    static PyObject *missing; /* owned; set once. Protected by the GIL. */
    if (missing == NULL) {
        PyObject *mon = sys_monitoring();
        if (mon == NULL)
            return NULL;
        missing = PyObject_GetAttrString(mon, "MISSING");
        Py_DECREF(mon);
    }
    return missing;
}

/* ---- same-line backward jumps ------------------------------------------------------ */

#define JUMP_CACHE 256

/* (code, from) -> line of a same-line backward jump. Protected by the GIL. */
static struct {
    void *code;
    int from;
    int line;
} jump_cache[JUMP_CACHE];

void monitor_jump_forget(void)
{
    memset(jump_cache, 0, sizeof jump_cache);
}

int monitor_jump_line(PyObject *code, PyObject *from, PyObject *to)
{
    int f = monitor_int(from), t = monitor_int(to);
    size_t h = (((uintptr_t)code >> 4) ^ (uintptr_t)f * 0x9E3779B1u) & (JUMP_CACHE - 1);
    if (jump_cache[h].code == code && jump_cache[h].from == f)
        return jump_cache[h].line;
    if (t > f)
        return 0;
    int fl = PyCode_Addr2Line((PyCodeObject *)code, f);
    int tl = PyCode_Addr2Line((PyCodeObject *)code, t);
    if (fl != tl || fl <= 0)
        return 0;
    jump_cache[h].code = code;
    jump_cache[h].from = f;
    jump_cache[h].line = fl;
    return fl;
}
