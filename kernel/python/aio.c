/* aio.c - top-level await. The cell's coroutine runs as a task on one event
 * loop that the kernel keeps between cells but never leaves running, as
 * IPython's terminal does (ipykernel runs cells inside its running loop, so
 * asyncio.run() fails there). Owns that loop. */
#include "aio.h"

/* The kernel's event loop (owned), or NULL until a cell awaits. Protected
 * by the GIL; only the main thread runs it. */
static PyObject *the_loop;

int aio_is_coroutine_code(PyObject *code)
{
    PyObject *flags = PyObject_GetAttrString(code, "co_flags");
    if (flags == NULL)
        return -1;
    long f = PyLong_AsLong(flags);
    Py_DECREF(flags);
    if (f == -1 && PyErr_Occurred())
        return -1;
    return (f & CO_COROUTINE) != 0;
}

/* Returns the kernel's loop (borrowed), making a new one when there is none
 * or the user closed it; NULL with an exception set. */
static PyObject *get_loop(PyObject *asyncio)
{
    if (the_loop != NULL) {
        PyObject *closed = PyObject_CallMethod(the_loop, "is_closed", NULL);
        if (closed == NULL)
            return NULL;
        int is_closed = PyObject_IsTrue(closed);
        Py_DECREF(closed);
        if (is_closed < 0)
            return NULL;
        if (!is_closed)
            return the_loop;
        Py_CLEAR(the_loop);
    }
    the_loop = PyObject_CallMethod(asyncio, "new_event_loop", NULL);
    return the_loop;
}

/* Drops the traceback entries before cell_code's frame (asyncio's
 * run_until_complete, Future.result, Task.__step) from the pending
 * exception. Leaves the exception pending. */
static void trim_traceback(PyObject *cell_code)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *t = Py_XNewRef(tb);
    while (t != NULL && t != Py_None) {
        PyObject *frame = PyObject_GetAttrString(t, "tb_frame");
        PyObject *code = frame ? PyObject_GetAttrString(frame, "f_code") : NULL;
        Py_XDECREF(frame);
        int found = code == cell_code;
        Py_XDECREF(code);
        if (found || code == NULL)
            break;
        Py_SETREF(t, PyObject_GetAttrString(t, "tb_next"));
    }
    if (PyErr_Occurred() || t == NULL) { /* leave the traceback as it was */
        PyErr_Clear();
        Py_XDECREF(t);
    } else {
        if (t == Py_None)
            Py_CLEAR(t);
        Py_XSETREF(tb, t);
        if (value != NULL)
            PyException_SetTraceback(value, tb ? tb : Py_None);
    }
    PyErr_Restore(type, value, tb);
}

PyObject *aio_run(PyObject *coro, PyObject *cell_code)
{
    PyObject *asyncio = NULL, *task = NULL, *res = NULL;

    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        goto error;
    PyObject *running = PyObject_CallMethod(asyncio, "_get_running_loop", NULL);
    if (running == NULL)
        goto error;
    int is_running = running != Py_None;
    Py_DECREF(running);
    if (is_running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "top-level await needs the kernel's event loop, but another event loop "
                        "is running in this thread");
        goto error;
    }
    PyObject *loop = get_loop(asyncio); /* borrowed */
    if (loop == NULL)
        goto error;
    task = PyObject_CallMethod(loop, "create_task", "(O)", coro);
    if (task == NULL)
        goto error;
    res = PyObject_CallMethod(loop, "run_until_complete", "(O)", task);
    if (res == NULL) {
        /* Interrupted (KeyboardInterrupt in the selector) or failed: a task
         * still pending is cancelled and run to its end, so it does not
         * resume in a later cell. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *done = PyObject_CallMethod(task, "done", NULL);
        if (done == Py_False) {
            PyObject *r = PyObject_CallMethod(task, "cancel", NULL);
            Py_XDECREF(r);
            r = r ? PyObject_CallMethod(loop, "run_until_complete", "(O)", task) : NULL;
            Py_XDECREF(r);
        }
        Py_XDECREF(done);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        trim_traceback(cell_code);
    }
error:
    Py_XDECREF(task);
    Py_XDECREF(asyncio);
    return res;
}

void aio_clear(void)
{
    if (the_loop == NULL)
        return;
    PyObject *r = PyObject_CallMethod(the_loop, "close", NULL);
    if (r == NULL)
        PyErr_Clear();
    Py_XDECREF(r);
    Py_CLEAR(the_loop);
}
