/* comms.c - comms through the `comm` package. ipykernel's way, without
 * ipykernel: when user code imports comm, comm.create_comm and
 * comm.get_comm_manager are pointed at the kernel's Comm class (a subclass
 * of comm.base_comm.BaseComm made here, whose publish_msg sends on iopub
 * with metadata and buffers) and at one comm.base_comm.CommManager, which
 * keeps the targets and the open comms. Messages from the frontend go to
 * that manager. Until comm is imported nothing of this is loaded. Owns the
 * manager, the class and the kernel object that Comm.kernel gives (its
 * get_parent() is what ipywidgets' Output widget uses to capture output).
 */
#include "comms.h"

#include <string.h>

#include "interp.h"
#include "log.h"

/* Protected by the GIL. */
static struct {
    PyObject *manager;    /* owned: the CommManager, or NULL until comm is imported */
    PyObject *comm_class; /* owned: the kernel's Comm class */
    PyObject *kernel;     /* owned: what Comm.kernel and ipywidgets see as the kernel */
} cs;

/* ---- JSON -> Python --------------------------------------------------------- */

/* Returns a new Python object for v, or NULL with an exception set. */
static PyObject *from_json(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        PyObject *d = PyDict_New();
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            PyObject *pv = d ? from_json(x) : NULL;
            if (pv == NULL || PyDict_SetItemString(d, k, pv) < 0) {
                Py_XDECREF(pv);
                Py_XDECREF(d);
                return NULL;
            }
            Py_DECREF(pv);
        }
        return d;
    }
    case JSON_ARRAY: {
        PyObject *l = PyList_New((Py_ssize_t)json_array_size(v));
        for (size_t i = 0; l && i < json_array_size(v); i++) {
            PyObject *pv = from_json(json_array_get(v, i));
            if (pv == NULL) {
                Py_DECREF(l);
                return NULL;
            }
            PyList_SET_ITEM(l, (Py_ssize_t)i, pv);
        }
        return l;
    }
    case JSON_STRING:
        return PyUnicode_FromStringAndSize(json_string_value(v), (Py_ssize_t)json_string_length(v));
    case JSON_INTEGER:
        return PyLong_FromLongLong(json_integer_value(v));
    case JSON_REAL:
        return PyFloat_FromDouble(json_real_value(v));
    case JSON_TRUE:
        Py_RETURN_TRUE;
    case JSON_FALSE:
        Py_RETURN_FALSE;
    default:
        Py_RETURN_NONE;
    }
}

/* The message as ipykernel hands it to comm handlers: header,
 * parent_header, metadata, content, buffers (bytes), msg_id, msg_type.
 * Returns a new dict, or NULL with an exception set. */
static PyObject *msg_dict(const wire_msg *m, int with_buffers)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    struct {
        const char *key;
        json_t *v;
    } parts[] = {{"header", m->header},
                 {"parent_header", m->parent_header},
                 {"metadata", m->metadata},
                 {"content", m->content},
                 {"msg_id", json_object_get(m->header, "msg_id")},
                 {"msg_type", json_object_get(m->header, "msg_type")}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        PyObject *v = parts[i].v ? from_json(parts[i].v) : Py_NewRef(Py_None);
        if (v == NULL || PyDict_SetItemString(d, parts[i].key, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    PyObject *bufs = PyList_New(0);
    for (size_t i = 0; with_buffers && bufs && i < m->n_buffers; i++) {
        PyObject *b = PyBytes_FromStringAndSize(m->buffers[i].data, (Py_ssize_t)m->buffers[i].len);
        if (b == NULL || PyList_Append(bufs, b) < 0)
            Py_CLEAR(bufs);
        Py_XDECREF(b);
    }
    if (bufs == NULL || PyDict_SetItemString(d, "buffers", bufs) < 0) {
        Py_XDECREF(bufs);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(bufs);
    return d;
}

/* ---- the Comm class --------------------------------------------------------- */

/* Converts a list of bytes-like objects to frames (borrowed from views,
 * released by release_buffers). Returns the count, or -1 with an exception
 * set. */
static Py_ssize_t take_buffers(PyObject *buffers, Py_buffer **views, wire_frame **frames)
{
    *views = NULL;
    *frames = NULL;
    if (buffers == NULL || buffers == Py_None)
        return 0;
    PyObject *seq = PySequence_Fast(buffers, "buffers must be a list of bytes-like objects");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), got = 0;
    *views = n ? PyMem_Calloc((size_t)n, sizeof **views) : NULL;
    *frames = n ? PyMem_Calloc((size_t)n, sizeof **frames) : NULL;
    if (n && (*views == NULL || *frames == NULL)) {
        PyErr_NoMemory();
        goto error;
    }
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &(*views)[got],
                               PyBUF_CONTIG_RO) < 0)
            goto error;
        (*frames)[got].data = (*views)[got].buf;
        (*frames)[got].len = (size_t)(*views)[got].len;
    }
    Py_DECREF(seq);
    return n;
error:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&(*views)[i]);
    PyMem_Free(*views);
    PyMem_Free(*frames);
    *views = NULL;
    *frames = NULL;
    Py_DECREF(seq);
    return -1;
}

static void release_buffers(Py_buffer *views, wire_frame *frames, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(frames);
}

/* Comm.publish_msg(self, msg_type, data=None, metadata=None, buffers=None,
 * **keys): content is {data, comm_id, **keys}, as ipykernel sends it. */
static PyObject *comm_publish_msg(PyObject *unused, PyObject *args, PyObject *kw)
{
    PyObject *self, *msg_type, *data = Py_None, *metadata = Py_None, *buffers = Py_None;
    PyObject *content = NULL, *comm_id = NULL, *keys = NULL;
    json_t *jcontent = NULL, *jmeta = NULL;
    Py_buffer *views = NULL;
    wire_frame *frames = NULL;
    Py_ssize_t nbuf = 0;

    if (!PyArg_ParseTuple(args, "OU|OOO:publish_msg", &self, &msg_type, &data, &metadata, &buffers))
        return NULL;
    keys = kw ? PyDict_Copy(kw) : PyDict_New();
    if (keys == NULL)
        return NULL;
    /* data, metadata and buffers may come as keywords */
    static const char *const named[] = {"data", "metadata", "buffers"};
    PyObject **slot[] = {&data, &metadata, &buffers};
    for (size_t i = 0; i < 3; i++) {
        PyObject *v = PyDict_GetItemString(keys, named[i]); /* borrowed; kw keeps it */
        if (v != NULL) {
            *slot[i] = v;
            if (PyDict_DelItemString(keys, named[i]) < 0)
                goto error;
        }
    }
    comm_id = PyObject_GetAttrString(self, "comm_id");
    content = comm_id ? PyDict_New() : NULL;
    if (content == NULL)
        goto error;
    PyObject *d = data == Py_None ? PyDict_New() : Py_NewRef(data);
    int bad = d == NULL || PyDict_SetItemString(content, "data", d) < 0 ||
              PyDict_SetItemString(content, "comm_id", comm_id) < 0 ||
              PyDict_Update(content, keys) < 0;
    Py_XDECREF(d);
    if (bad)
        goto error;
    jcontent = interp_to_json(content);
    jmeta = jcontent ? (metadata == Py_None ? json_object() : interp_to_json(metadata)) : NULL;
    if (jmeta == NULL)
        goto error;
    nbuf = take_buffers(buffers, &views, &frames);
    if (nbuf < 0)
        goto error;
    const char *type = PyUnicode_AsUTF8(msg_type);
    if (type == NULL)
        goto error;
    publisher *pub = interp_publisher();
    const wire_msg *req = interp_current_request();
    pub->sync(pub->self);
    pub->iopub_ext(pub->self, type, jcontent, jmeta, frames, (size_t)nbuf,
                   req ? req->header : NULL);
    jcontent = jmeta = NULL;
    release_buffers(views, frames, nbuf);
    Py_DECREF(keys);
    Py_DECREF(comm_id);
    Py_DECREF(content);
    Py_RETURN_NONE;
error:
    if (nbuf > 0)
        release_buffers(views, frames, nbuf);
    json_decref(jcontent);
    json_decref(jmeta);
    Py_XDECREF(keys);
    Py_XDECREF(comm_id);
    Py_XDECREF(content);
    return NULL;
}

/* Fires get_ipython().events' event, when the shell has events. */
static void shell_event(const char *event)
{
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    PyObject *gi = builtins ? PyDict_GetItemString(builtins, "get_ipython") : NULL;
    PyObject *shell = gi ? PyObject_CallNoArgs(gi) : NULL;
    PyObject *events = shell ? PyObject_GetAttrString(shell, "events") : NULL;
    PyObject *r = events ? PyObject_CallMethod(events, "trigger", "s", event) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(events);
    Py_XDECREF(shell);
    PyErr_Clear();
}

/* Comm.handle_msg(self, msg): BaseComm's, without its import of IPython. */
static PyObject *comm_handle_msg(PyObject *unused, PyObject *args)
{
    PyObject *self, *msg;
    if (!PyArg_ParseTuple(args, "OO:handle_msg", &self, &msg))
        return NULL;
    PyObject *cb = PyObject_GetAttrString(self, "_msg_callback");
    if (cb == NULL)
        return NULL;
    PyObject *r = Py_NewRef(Py_None);
    if (cb != Py_None) {
        shell_event("pre_execute");
        Py_SETREF(r, PyObject_CallOneArg(cb, msg));
        if (r != NULL)
            shell_event("post_execute");
    }
    Py_DECREF(cb);
    return r;
}

/* kernel.get_parent(): the request being handled, as a message dict
 * ({"header": ..., ...}), or {} between requests. */
static PyObject *kernel_get_parent(PyObject *unused, PyObject *args)
{
    const wire_msg *req = interp_current_request();
    return req ? msg_dict(req, 0) : PyDict_New();
}

static PyMethodDef get_parent_def = {"get_parent", kernel_get_parent, METH_VARARGS,
                                     "get_parent()\n--\n\nThe message being handled, as a dict."};

PyObject *comms_get_parent_function(void)
{
    return PyCFunction_New(&get_parent_def, NULL);
}

static PyMethodDef comm_defs[] = {
    {"publish_msg", (PyCFunction)(void (*)(void))comm_publish_msg, METH_VARARGS | METH_KEYWORDS,
     "publish_msg(msg_type, data=None, metadata=None, buffers=None, **keys)\n--\n\n"
     "Send a comm message to the frontend on iopub."},
    {"handle_msg", comm_handle_msg, METH_VARARGS,
     "handle_msg(msg)\n--\n\nCall the on_msg callback with a comm_msg."},
    {"get_parent", kernel_get_parent, METH_VARARGS,
     "get_parent()\n--\n\nThe message being handled, as a dict."},
};

/* Returns a new instance method (it binds like a def in a class body). */
static PyObject *method(PyMethodDef *def)
{
    PyObject *f = PyCFunction_New(def, NULL);
    PyObject *m = f ? PyInstanceMethod_New(f) : NULL;
    Py_XDECREF(f);
    return m;
}

/* type(name, bases, ns). Returns a new class, or NULL. */
static PyObject *make_class(const char *name, PyObject *bases, PyObject *ns)
{
    PyObject *r = PyObject_CallFunction((PyObject *)&PyType_Type, "sOO", name, bases, ns);
    return r;
}

/* comm.create_comm(*args, **kwargs) */
static PyObject *create_comm(PyObject *unused, PyObject *args, PyObject *kw)
{
    return PyObject_Call(cs.comm_class, args, kw);
}

/* comm.get_comm_manager() */
static PyObject *get_comm_manager(PyObject *unused, PyObject *noargs)
{
    return Py_NewRef(cs.manager);
}

static PyMethodDef create_comm_def = {
    "create_comm", (PyCFunction)(void (*)(void))create_comm, METH_VARARGS | METH_KEYWORDS,
    "create_comm(target_name='comm', data=None, metadata=None, buffers=None, comm_id=None, "
    "...)\n--\n\nOpen a comm to the frontend (the pyrometer kernel's Comm)."};
static PyMethodDef get_manager_def = {"get_comm_manager", get_comm_manager, METH_NOARGS,
                                      "get_comm_manager()\n--\n\nThe kernel's CommManager."};

int comms_patch_comm(PyObject *comm_module)
{
    PyObject *base = NULL, *base_comm = NULL, *manager_cls = NULL, *ns = NULL, *bases = NULL;
    PyObject *kns = NULL, *kcls = NULL, *f = NULL;
    int rc = -1;

    if (cs.manager != NULL) /* a second import (after del sys.modules['comm']) */
        comms_clear();
    base = PyImport_ImportModule("comm.base_comm");
    base_comm = base ? PyObject_GetAttrString(base, "BaseComm") : NULL;
    manager_cls = base_comm ? PyObject_GetAttrString(base, "CommManager") : NULL;
    if (manager_cls == NULL)
        goto error;
    cs.manager = PyObject_CallNoArgs(manager_cls);
    if (cs.manager == NULL)
        goto error;

    /* the kernel object: get_parent() and comm_manager */
    kns = PyDict_New();
    f = kns ? PyUnicode_FromString("_pyrometer_kernel") : NULL;
    if (f == NULL || PyDict_SetItemString(kns, "__module__", f) < 0)
        goto error;
    Py_CLEAR(f);
    f = method(&comm_defs[2]);
    if (f == NULL || PyDict_SetItemString(kns, "get_parent", f) < 0 ||
        PyDict_SetItemString(kns, "comm_manager", cs.manager) < 0)
        goto error;
    Py_CLEAR(f);
    bases = PyTuple_New(0);
    kcls = bases ? make_class("Kernel", bases, kns) : NULL;
    Py_CLEAR(bases);
    cs.kernel = kcls ? PyObject_CallNoArgs(kcls) : NULL;
    if (cs.kernel == NULL)
        goto error;

    /* class Comm(BaseComm): publish_msg, handle_msg, kernel */
    ns = PyDict_New();
    if (ns == NULL)
        goto error;
    PyObject *modname = PyUnicode_FromString("_pyrometer_kernel");
    int bad = modname == NULL || PyDict_SetItemString(ns, "__module__", modname) < 0;
    Py_XDECREF(modname);
    if (bad)
        goto error;
    for (int i = 0; i < 2; i++) {
        f = method(&comm_defs[i]);
        if (f == NULL || PyDict_SetItemString(ns, comm_defs[i].ml_name, f) < 0)
            goto error;
        Py_CLEAR(f);
    }
    if (PyDict_SetItemString(ns, "kernel", cs.kernel) < 0)
        goto error;
    bases = PyTuple_Pack(1, base_comm);
    cs.comm_class = bases ? make_class("Comm", bases, ns) : NULL;
    if (cs.comm_class == NULL)
        goto error;

    f = PyCFunction_New(&create_comm_def, NULL);
    if (f == NULL || PyObject_SetAttrString(comm_module, "create_comm", f) < 0)
        goto error;
    Py_CLEAR(f);
    f = PyCFunction_New(&get_manager_def, NULL);
    if (f == NULL || PyObject_SetAttrString(comm_module, "get_comm_manager", f) < 0)
        goto error;
    rc = 0;
error:
    if (rc < 0)
        comms_clear();
    Py_XDECREF(f);
    Py_XDECREF(base);
    Py_XDECREF(base_comm);
    Py_XDECREF(manager_cls);
    Py_XDECREF(ns);
    Py_XDECREF(bases);
    Py_XDECREF(kns);
    Py_XDECREF(kcls);
    return rc;
}

int comms_patch_ipywidgets(PyObject *ipywidgets)
{
    PyObject *version = PyObject_GetAttrString(ipywidgets, "__version__");
    if (version == NULL) {
        PyErr_Clear();
        return 0;
    }
    const char *v = PyUnicode_Check(version) ? PyUnicode_AsUTF8(version) : NULL;
    /* 8 and later use `comm`; 7 needs ipykernel's own comms */
    int modern = v && v[0] >= '1' && v[0] <= '9' && (v[1] != '.' || v[0] >= '8');
    Py_DECREF(version);
    PyErr_Clear();
    if (!modern || cs.manager == NULL ||
        !PyObject_HasAttrString(ipywidgets, "register_comm_target"))
        return 0;
    PyObject *r = PyObject_CallMethod(ipywidgets, "register_comm_target", NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Writes the pending exception to sys.stderr (the user sees it under the
 * message's parent) and clears it. */
static void report(void)
{
    PyErr_Print();
    PyErr_Clear();
}

void comms_handle(publisher *pub, const wire_msg *msg)
{
    PyGILState_STATE g = PyGILState_Ensure();
    const char *type = msg->msg_type;
    if (cs.manager == NULL) {
        if (strcmp(type, "comm_open") == 0) {
            const char *id = json_string_value(json_object_get(msg->content, "comm_id"));
            const char *target = json_string_value(json_object_get(msg->content, "target_name"));
            log_msg("comm_open for target \"%.64s\" before any was registered: closing it",
                    target ? target : "");
            pub->iopub(pub->self, "comm_close",
                       json_pack("{s:s, s:{}}", "comm_id", id ? id : "", "data"), msg->header);
        }
        PyGILState_Release(g);
        return;
    }
    interp_set_request(pub, msg);
    PyObject *d = msg_dict(msg, 1);
    PyObject *r = d ? PyObject_CallMethod(cs.manager, type, "OOO", Py_None, Py_None, d) : NULL;
    if (r == NULL)
        report();
    Py_XDECREF(r);
    Py_XDECREF(d);
    pub->sync(pub->self);
    interp_set_request(NULL, NULL);
    PyGILState_Release(g);
}

json_t *comms_info(const char *target_name)
{
    json_t *comms = json_object();
    if (cs.manager == NULL) /* no comm yet: none open, and no GIL needed */
        return json_pack("{s:s, s:o}", "status", "ok", "comms", comms);
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *open = PyObject_GetAttrString(cs.manager, "comms");
    PyObject *items = open && PyDict_Check(open) ? PyDict_Items(open) : NULL;
    for (Py_ssize_t i = 0; items && i < PyList_GET_SIZE(items); i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *target = PyObject_GetAttrString(PyTuple_GET_ITEM(pair, 1), "target_name");
        const char *id = PyUnicode_AsUTF8(PyTuple_GET_ITEM(pair, 0));
        const char *t = target ? PyUnicode_AsUTF8(target) : NULL;
        if (id && t && (target_name == NULL || !*target_name || strcmp(t, target_name) == 0))
            json_object_set_new(comms, id, json_pack("{s:s}", "target_name", t));
        Py_XDECREF(target);
        PyErr_Clear();
    }
    Py_XDECREF(items);
    Py_XDECREF(open);
    PyErr_Clear();
    PyGILState_Release(g);
    return json_pack("{s:s, s:o}", "status", "ok", "comms", comms);
}

void comms_clear(void)
{
    Py_CLEAR(cs.manager);
    Py_CLEAR(cs.comm_class);
    Py_CLEAR(cs.kernel);
}
