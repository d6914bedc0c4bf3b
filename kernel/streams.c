/* streams.c - OutStream, the text file behind sys.stdout and sys.stderr.
 * write() hands UTF-8 bytes to the publisher's stream(), which batches them
 * into `stream` messages ordered with all other iopub traffic. Bytes written
 * to fd 1/2 directly are captured by server.c. */
#include "streams.h"

#include <string.h>

#include "interp.h"

typedef struct {
    PyObject_HEAD
    char name[8]; /* "stdout" or "stderr"; immutable */
    int fd;       /* the fd that C-level writers of this stream use */
} OutStream;

static PyObject *os_write(OutStream *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "write() argument must be str, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    PyObject *b = PyUnicode_AsEncodedString(arg, "utf-8", "replace");
    if (b == NULL)
        return NULL;
    publisher *pub = interp_publisher();
    pub->stream(pub->self, self->name, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
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
    {"flush", (PyCFunction)os_flush, METH_NOARGS, "Streams are sent in order; nothing to do."},
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

static int install_one(PyObject *type, const char *name, int fd)
{
    OutStream *s = PyObject_New(OutStream, (PyTypeObject *)type);
    if (s == NULL)
        return -1;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->fd = fd;
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
    PyObject *type = PyType_FromSpec(&os_spec);
    if (type == NULL)
        return -1;
    int rc = PyModule_AddObjectRef(kmod, "OutStream", type);
    if (rc == 0)
        rc = install_one(type, "stdout", 1);
    if (rc == 0)
        rc = install_one(type, "stderr", 2);
    Py_DECREF(type);
    return rc;
}
