/* comms.h - Jupyter comms (comm_open, comm_msg, comm_close, comm_info)
 * through the `comm` package, which ipywidgets 8 uses. */
#ifndef PYROMETER_COMMS_H
#define PYROMETER_COMMS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <jansson.h>

#include "publisher.h"
#include "wire.h"

/* The import hook calls this once `comm` is imported: comm.create_comm and
 * comm.get_comm_manager then give the kernel's Comm (a comm.base_comm.
 * BaseComm that publishes on iopub) and its one comm.base_comm.CommManager.
 * GIL held. Returns 0, or -1 with an exception set. */
int comms_patch_comm(PyObject *comm_module);

/* The import hook calls this once `ipywidgets` (8 or later) is imported:
 * its comm targets are registered, as under ipykernel, so a frontend can
 * ask for every widget's state again (jupyter.widget.control). GIL held.
 * Returns 0, or -1 with an exception set. */
int comms_patch_ipywidgets(PyObject *ipywidgets);

/* Handles a comm_open, comm_msg or comm_close from the frontend (msg
 * borrowed): the manager calls the target or the comm's callbacks, with
 * output and display parented to msg. Before `comm` is imported no target
 * can exist: a comm_open is answered with comm_close, and nothing is
 * imported. Takes the GIL. */
void comms_handle(publisher *pub, const wire_msg *msg);

/* Returns a new comm_info_reply content: the open comms, only those of
 * target_name when it is not NULL or "". Takes the GIL (none needed, and
 * none taken, before `comm` is imported). */
json_t *comms_info(const char *target_name);

/* Drops the manager and the class (at interpreter end). GIL held. */
void comms_clear(void);

/* A new function get_parent(): the request being handled, as a message
 * dict, or {} between requests (what ipywidgets' Output widget asks the
 * kernel object for). NULL with an exception set. GIL held. */
PyObject *comms_get_parent_function(void);

#endif
