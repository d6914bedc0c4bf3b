/* streams.c - OutStream, the text file behind sys.stdout and sys.stderr.
 * write() hands UTF-8 bytes to the publisher's stream(), which batches them
 * into `stream` messages ordered with all other iopub traffic. Bytes written
 * to fd 1/2 directly are captured by server.c.
 *
 * Threads started by a cell keep printing into that cell: threading's
 * _start_new_thread (3.11, 3.12) and _start_joinable_thread (3.13+) are
 * wrapped so that each new thread remembers the header of the request that
 * was running when it was started.
 */
#include "streams.h"

#include <string.h>
#include <unistd.h>

#include "interp.h"

/* The request header a Python thread was started under (owned), or NULL for
 * the main thread and threads started outside any cell. Thread-local. */
static __thread json_t *thread_parent;

/* The kernel's own pid; a forked child (multiprocessing) writes straight to
 * fd 1/2, which the kernel captures, since the publisher's threads and locks
 * did not survive the fork. Set once at install. */
static pid_t kernel_pid;

/* The original _thread.start_new_thread, and (3.13+, where threading
 * starts its threads through it) _thread.start_joinable_thread, or NULL.
 * Protected by the GIL. */
static PyObject *orig_start_new_thread, *orig_start_joinable_thread;

typedef struct {
    PyObject_HEAD
    char name[8]; /* "stdout" or "stderr"; immutable */
    int fd;       /* the fd that C-level writers of this stream use */
    /* In a forked child only: text not yet written to fd, kept until a
     * newline so that lines from several children do not interleave. */
    char *child_buf;
    size_t child_len;
} OutStream;

static void write_all(int fd, const char *p, size_t left)
{
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w <= 0)
            return;
        p += w;
        left -= (size_t)w;
    }
}

/* A forked child's write: whole lines go to the fd at once. An empty write
 * changes nothing (realloc to 0 bytes would free the buffer and leave
 * child_buf dangling). */
static void child_write(OutStream *self, const char *p, size_t n)
{
    if (n == 0)
        return;
    char *nb = realloc(self->child_buf, self->child_len + n);
    if (nb == NULL) {
        write_all(self->fd, p, n);
        return;
    }
    self->child_buf = nb;
    memcpy(nb + self->child_len, p, n);
    self->child_len += n;
    size_t upto = self->child_len;
    while (upto > 0 && nb[upto - 1] != '\n')
        upto--;
    if (upto > 0) {
        write_all(self->fd, nb, upto);
        memmove(nb, nb + upto, self->child_len - upto);
        self->child_len -= upto;
    }
}

static PyObject *os_write(OutStream *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "write() argument must be str, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    if (thread_parent == NULL && interp_silent())
        return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
    PyObject *b = PyUnicode_AsEncodedString(arg, "utf-8", "replace");
    if (b == NULL)
        return NULL;
    if (getpid() != kernel_pid) {
        child_write(self, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
        Py_DECREF(b);
        return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
    }
    publisher *pub = interp_publisher();
    if (pub == NULL) { /* the kernel has stopped; its hosting interpreter lives on */
        write_all(self->fd, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
        Py_DECREF(b);
        return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
    }
    pub->sync(pub->self); /* what C code wrote to fd 1/2 so far goes first */
    pub->stream(pub->self, self->name, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b),
                thread_parent);
    Py_DECREF(b);
    return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
}

static PyObject *os_writelines(OutStream *self, PyObject *lines)
{
    PyObject *it = PyObject_GetIter(lines), *item;
    if (it == NULL)
        return NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *r = os_write(self, item);
        Py_DECREF(item);
        if (r == NULL) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *os_flush(OutStream *self, PyObject *unused)
{
    if (self->child_len > 0 && getpid() != kernel_pid) {
        write_all(self->fd, self->child_buf, self->child_len);
        self->child_len = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *os_false(OutStream *self, PyObject *unused)
{
    Py_RETURN_FALSE;
}

static PyObject *os_true(OutStream *self, PyObject *unused)
{
    Py_RETURN_TRUE;
}

static PyObject *os_fileno(OutStream *self, PyObject *unused)
{
    return PyLong_FromLong(self->fd);
}

static PyObject *os_get_name(OutStream *self, void *closure)
{
    return PyUnicode_FromFormat("<%s>", self->name);
}

static PyObject *os_get_str(OutStream *self, void *closure)
{
    return PyUnicode_FromString((const char *)closure);
}

static PyObject *os_get_false(OutStream *self, void *closure)
{
    Py_RETURN_FALSE;
}

static PyObject *os_repr(OutStream *self)
{
    return PyUnicode_FromFormat("<pyrometer OutStream %s>", self->name);
}

static PyMethodDef os_methods[] = {
    {"write", (PyCFunction)os_write, METH_O, "Write a str; returns its length."},
    {"writelines", (PyCFunction)os_writelines, METH_O, "Write each str of an iterable."},
    {"flush", (PyCFunction)os_flush, METH_NOARGS,
     "In the kernel, nothing to do (streams are sent in order); in a forked child, writes the "
     "pending partial line."},
    {"isatty", (PyCFunction)os_false, METH_NOARGS, NULL},
    {"readable", (PyCFunction)os_false, METH_NOARGS, NULL},
    {"seekable", (PyCFunction)os_false, METH_NOARGS, NULL},
    {"writable", (PyCFunction)os_true, METH_NOARGS, NULL},
    {"fileno", (PyCFunction)os_fileno, METH_NOARGS, "The fd that C code writes this stream to."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef os_getset[] = {
    {"name", (getter)os_get_name, NULL, NULL, NULL},
    {"encoding", (getter)os_get_str, NULL, NULL, "utf-8"},
    {"errors", (getter)os_get_str, NULL, NULL, "replace"},
    {"mode", (getter)os_get_str, NULL, NULL, "w"},
    {"closed", (getter)os_get_false, NULL, NULL, NULL},
    {"line_buffering", (getter)os_get_false, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot os_slots[] = {
    {Py_tp_methods, os_methods},
    {Py_tp_getset, os_getset},
    {Py_tp_repr, os_repr},
    {Py_tp_doc, "A text stream whose writes become Jupyter `stream` messages."},
    {0, NULL},
};

static PyType_Spec os_spec = {
    .name = "_pyrometer_kernel.OutStream",
    .basicsize = sizeof(OutStream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = os_slots,
};

/* ---- threads keep the parent of the cell that started them ---------------- */

typedef struct {
    PyObject_HEAD
    PyObject *func, *args, *kwargs; /* owned */
    json_t *parent;                 /* owned, or NULL */
} ThreadBoot;

static void tb_dealloc(ThreadBoot *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(self->func);
    Py_XDECREF(self->args);
    Py_XDECREF(self->kwargs);
    json_decref(self->parent);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Runs in the new thread: adopt the parent, then run the real target. */
static PyObject *tb_call(ThreadBoot *self, PyObject *args, PyObject *kw)
{
    json_decref(thread_parent);
    thread_parent = json_incref(self->parent);
    PyObject *r = PyObject_Call(self->func, self->args, self->kwargs);
    json_decref(thread_parent);
    thread_parent = NULL;
    return r;
}

static PyType_Slot tb_slots[] = {
    {Py_tp_dealloc, tb_dealloc},
    {Py_tp_call, tb_call},
    {0, NULL},
};

static PyType_Spec tb_spec = {
    .name = "_pyrometer_kernel._ThreadBoot",
    .basicsize = sizeof(ThreadBoot),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = tb_slots,
};

/* Type object for ThreadBoot, and 1 while streams_call_unparented runs.
 * Protected by the GIL. */
static PyObject *tb_type;
static int unparented;

/* The parent a thread started now inherits (borrowed), or NULL (also
 * while streams_call_unparented runs). */
static json_t *starting_parent(void)
{
    const wire_msg *req = interp_current_request();
    if (unparented)
        return NULL;
    return thread_parent ? thread_parent : (req ? req->header : NULL);
}

/* Returns a new ThreadBoot that runs func(*fargs, **fkw) under parent. */
static PyObject *boot_new(PyObject *func, PyObject *fargs, PyObject *fkw, json_t *parent)
{
    ThreadBoot *boot = PyObject_New(ThreadBoot, (PyTypeObject *)tb_type);
    if (boot == NULL)
        return NULL;
    boot->func = Py_NewRef(func);
    boot->args = Py_NewRef(fargs);
    boot->kwargs = Py_XNewRef(fkw);
    boot->parent = json_incref(parent);
    return (PyObject *)boot;
}

static PyObject *start_new_thread(PyObject *mod, PyObject *args)
{
    PyObject *func, *fargs, *fkw = NULL;
    if (!PyArg_ParseTuple(args, "OO|O:start_new_thread", &func, &fargs, &fkw))
        return NULL;
    json_t *parent = starting_parent();
    if (parent == NULL)
        return PyObject_CallObject(orig_start_new_thread, args);
    PyObject *boot = boot_new(func, fargs, fkw, parent);
    if (boot == NULL)
        return NULL;
    PyObject *r = PyObject_CallFunction(orig_start_new_thread, "O()", boot);
    Py_DECREF(boot);
    return r;
}

/* start_joinable_thread(function, handle=None, daemon=True): the function is
 * wrapped; the other arguments pass through as they came. */
static PyObject *start_joinable_thread(PyObject *mod, PyObject *args, PyObject *kw)
{
    json_t *parent = starting_parent();
    if (parent == NULL || PyTuple_GET_SIZE(args) < 1)
        return PyObject_Call(orig_start_joinable_thread, args, kw);
    PyObject *empty = PyTuple_New(0), *boot = NULL, *nargs = NULL, *r = NULL;
    if (empty == NULL)
        return NULL;
    boot = boot_new(PyTuple_GET_ITEM(args, 0), empty, NULL, parent);
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    nargs = boot ? PyTuple_New(n) : NULL;
    if (nargs != NULL) {
        PyTuple_SET_ITEM(nargs, 0, Py_NewRef(boot));
        for (Py_ssize_t i = 1; i < n; i++)
            PyTuple_SET_ITEM(nargs, i, Py_NewRef(PyTuple_GET_ITEM(args, i)));
        r = PyObject_Call(orig_start_joinable_thread, nargs, kw);
    }
    Py_DECREF(empty);
    Py_XDECREF(boot);
    Py_XDECREF(nargs);
    return r;
}

static PyMethodDef start_def = {"_start_new_thread", start_new_thread, METH_VARARGS,
                                "start_new_thread(function, args[, kwargs]) that keeps the "
                                "starting cell as the thread's output parent."};
static PyMethodDef start_joinable_def = {
    "_start_joinable_thread", (PyCFunction)(void (*)(void))start_joinable_thread,
    METH_VARARGS | METH_KEYWORDS,
    "start_joinable_thread(function, handle=None, daemon=True) that keeps the starting cell as "
    "the thread's output parent."};

/* Sets threading.<name> to def's function when threading has that name and
 * _thread has orig_name (*orig receives the original). Returns 0 or -1. */
static int patch_one(PyObject *threading, PyObject *thread, PyObject *kmod, PyMethodDef *def,
                     const char *orig_name, PyObject **orig)
{
    if (!PyObject_HasAttrString(threading, def->ml_name) ||
        !PyObject_HasAttrString(thread, orig_name))
        return 0;
    if (*orig == NULL) {
        *orig = PyObject_GetAttrString(thread, orig_name);
        if (*orig == NULL)
            return -1;
    }
    PyObject *fn = PyCFunction_New(def, kmod);
    int rc = fn ? PyObject_SetAttrString(threading, def->ml_name, fn) : -1;
    Py_XDECREF(fn);
    return rc;
}

/* Makes threading start its threads through the functions above, so a
 * thread's output goes to the cell that started it: _start_new_thread up to
 * 3.12, _start_joinable_thread from 3.13 on. Called by the import hook when
 * threading is imported (the kernel itself does not need it). */
int streams_patch_threading(PyObject *threading)
{
    PyObject *thread = NULL, *kmod = NULL;
    int rc = -1;

    if (tb_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the kernel's streams are not installed");
        return -1;
    }
    thread = PyImport_ImportModule("_thread");
    kmod = thread ? PyImport_ImportModule("_pyrometer_kernel") : NULL;
    if (kmod == NULL ||
        patch_one(threading, thread, kmod, &start_def, "start_new_thread", &orig_start_new_thread) <
            0 ||
        patch_one(threading, thread, kmod, &start_joinable_def, "start_joinable_thread",
                  &orig_start_joinable_thread) < 0)
        goto error;
    rc = 0;
error:
    Py_XDECREF(thread);
    Py_XDECREF(kmod);
    return rc;
}

static int install_one(PyObject *type, const char *name, int fd)
{
    OutStream *s = PyObject_New(OutStream, (PyTypeObject *)type);
    if (s == NULL)
        return -1;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->fd = fd;
    s->child_buf = NULL;
    s->child_len = 0;
    char dunder[16];
    snprintf(dunder, sizeof dunder, "__%s__", name);
    int rc = PySys_SetObject(name, (PyObject *)s);
    if (rc == 0)
        rc = PySys_SetObject(dunder, (PyObject *)s);
    Py_DECREF(s);
    return rc;
}

int streams_install(PyObject *kmod, PyObject *sys)
{
    kernel_pid = getpid();
    PyObject *type = PyType_FromSpec(&os_spec);
    if (type == NULL)
        return -1;
    int rc = PyModule_AddObjectRef(kmod, "OutStream", type);
    if (rc == 0)
        rc = install_one(type, "stdout", 1);
    if (rc == 0)
        rc = install_one(type, "stderr", 2);
    Py_DECREF(type);
    if (rc == 0) {
        tb_type = PyType_FromSpec(&tb_spec);
        if (tb_type == NULL)
            rc = -1;
    }
    return rc;
}

PyObject *streams_call_unparented(PyObject *fn)
{
    unparented = 1;
    PyObject *r = PyObject_CallNoArgs(fn);
    unparented = 0;
    return r;
}
