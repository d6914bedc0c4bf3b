/* interp.h - the embedded CPython: start-up, running a cell, the display
 * hook, rich display, input() and tracebacks.
 *
 * Every interp_* function is called WITHOUT the GIL held and takes it
 * itself, except where a comment says "GIL held" (those are for the
 * kernel's own Python-callable functions in magics.c and streams.c).
 */
#ifndef PYROMETER_INTERP_H
#define PYROMETER_INTERP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <jansson.h>

#include "publisher.h"
#include "wire.h"

/* Starts the interpreter with the `pyrometer` extension built in (hosted:
 * adopts the one already running in this process, whose GIL the caller has
 * released), installs the kernel's stdout/stderr, display hook, input() and
 * magics, and releases the GIL. signal_fd (or -1) becomes Python's signal
 * wakeup fd. pub (borrowed, must outlive interp_stop) carries every stream
 * and display. Returns 0, or -1 with a one-line reason in err. */
int interp_start(publisher *pub, int signal_fd, int hosted, char *err, size_t errlen);

/* For the embedded interpreter, before it starts: the standard library it
 * was built with must still be there (an upgrade that replaced or removed it
 * would otherwise end inside Py_Initialize). Returns 0, or -1 with one line
 * in err. Needs no interpreter. */
int interp_check_stdlib(char *err, size_t errlen);

/* Returns a new kernel_info_reply content object (protocol 5.3), or NULL.
 * Needs no interpreter: may be called before interp_start. */
json_t *interp_kernel_info(void);

/* Runs an execute_request (req borrowed; its content holds code, silent,
 * store_history, user_expressions, allow_stdin) and publishes
 * execute_input, streams, results and errors through pub. Returns a new
 * execute_reply content; *failed is set when the cell raised. */
json_t *interp_execute(publisher *pub, const wire_msg *req, int *failed);

/* Returns the current execution count. */
long interp_execution_count(void);

/* Returns a new is_complete_reply content for code. */
json_t *interp_is_complete(const char *code);

/* Ends the interpreter (Py_FinalizeEx); hosted, leaves it to its host, with
 * sys.stdout and sys.stderr writing to fd 1 and 2. */
void interp_stop(void);

/* ---- for the kernel's own Python-callable functions (GIL held) ---------- */

/* Publishes obj as display_data (or update_display_data when update is set
 * and display_id is not NULL). raw: obj is already a MIME bundle dict.
 * Returns 0, or -1 with an exception set. */
int interp_display(PyObject *obj, int raw, PyObject *metadata, PyObject *display_id, int update);

/* Publishes msg_type with content (stolen) on iopub under the running
 * request, after the output before it; nothing for a silent request. */
void interp_publish(const char *msg_type, json_t *content);

/* Returns a new {ename, evalue, traceback} object for exc (borrowed), as an
 * error message or reply carries it. GIL held. */
json_t *interp_error_content(PyObject *exc);

/* Publishes clear_output. */
void interp_clear_output(int wait);

/* Returns a new MIME bundle dict for obj: text/plain always, plus whatever
 * _repr_mimebundle_ and the _repr_*_ methods give. NULL with an exception
 * set on failure. *metadata receives a new dict. */
PyObject *interp_format(PyObject *obj, PyObject **metadata);

/* The user namespace (__main__.__dict__); borrowed. */
PyObject *interp_user_ns(void);

/* Returns a new JSON value for a Python object (dicts, lists, str, numbers,
 * bool, None; bytes become base64 text; anything else its str()). NULL with
 * an exception set. */
json_t *interp_to_json(PyObject *obj);

/* 1 while a silent execute_request runs: its output is not published. */
int interp_silent(void);

/* The request being executed, or NULL. */
const wire_msg *interp_current_request(void);

/* While Python runs for a request other than execute_request (a comm
 * message): makes req (borrowed) the request that display(),
 * clear_output() and comm messages are parented to, not silent, without
 * stdin; interp_set_request(NULL, NULL) ends it. GIL held. */
void interp_set_request(publisher *pub, const wire_msg *req);

/* The publisher given to interp_start. */
publisher *interp_publisher(void);

/* The kernel does not import linecache or getpass itself; the import hook
 * calls these when the user's code does (or at start-up, if something
 * already had). GIL held. Return 0, or -1 with an exception set. */

/* Moves the cells registered so far into linecache.cache, and registers
 * later cells there, so tracebacks and inspect.getsource() see them. */
int interp_patch_linecache(PyObject *linecache);

/* getpass.getpass asks the frontend, as input() does. */
int interp_patch_getpass(PyObject *getpass);

#endif
