/* streams.c - OutStream, the text file behind sys.stdout and sys.stderr.
 * write() hands UTF-8 bytes to the publisher's stream(), which batches them
 * into `stream` messages ordered with all other iopub traffic. Bytes written
 * to fd 1/2 directly are captured by server.c.
 *
 * Threads started by a cell keep printing into that cell: threading's
 * _start_new_thread is wrapped so that each new thread remembers the header
 * of the request that was running when it was started.
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

/* The original _thread.start_new_thread. Protected by the GIL. */
static PyObject *orig_start_new_thread;

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

/* Type object for ThreadBoot. Protected by the GIL. */
static PyObject *tb_type;

static PyObject *start_new_thread(PyObject *mod, PyObject *args)
{
    PyObject *func, *fargs, *fkw = NULL;
    if (!PyArg_ParseTuple(args, "OO|O:start_new_thread", &func, &fargs, &fkw))
        return NULL;
    const wire_msg *req = interp_current_request();
    json_t *parent = thread_parent ? thread_parent : (req ? req->header : NULL);
    if (parent == NULL)
        return PyObject_CallObject(orig_start_new_thread, args);
    ThreadBoot *boot = PyObject_New(ThreadBoot, (PyTypeObject *)tb_type);
    if (boot == NULL)
        return NULL;
    boot->func = Py_NewRef(func);
    boot->args = Py_NewRef(fargs);
    boot->kwargs = Py_XNewRef(fkw);
    boot->parent = json_incref(parent);
    PyObject *r = PyObject_CallFunction(orig_start_new_thread, "O()", (PyObject *)boot);
    Py_DECREF(boot);
    return r;
}

static PyMethodDef start_def = {"_start_new_thread", start_new_thread, METH_VARARGS,
                                "start_new_thread(function, args[, kwargs]) that keeps the "
                                "starting cell as the thread's output parent."};

/* Makes threading start its threads through start_new_thread above, so a
 * thread's output goes to the cell that started it. Called by the import
 * hook when threading is imported (the kernel itself does not need it). */
int streams_patch_threading(PyObject *threading)
{
    PyObject *thread = NULL, *kmod = NULL, *fn = NULL;
    int rc = -1;

    if (tb_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the kernel's streams are not installed");
        return -1;
    }
    if (orig_start_new_thread == NULL) {
        thread = PyImport_ImportModule("_thread");
        if (thread == NULL)
            goto error;
        orig_start_new_thread = PyObject_GetAttrString(thread, "start_new_thread");
        if (orig_start_new_thread == NULL)
            goto error;
    }
    kmod = PyImport_ImportModule("_pyrometer_kernel");
    fn = kmod ? PyCFunction_New(&start_def, kmod) : NULL;
    if (fn == NULL || PyObject_SetAttrString(threading, "_start_new_thread", fn) < 0)
        goto error;
    rc = 0;
error:
    Py_XDECREF(thread);
    Py_XDECREF(kmod);
    Py_XDECREF(fn);
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
