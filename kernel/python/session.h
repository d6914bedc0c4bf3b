/* session.h - the state of the running session that every part of the
 * Python side shares and none of them owns: the payload of the execute_reply
 * being built. The parts (interp, magics, shell, the IPython bridge) depend
 * on it, and it on none of them. */
#ifndef PYROMETER_SESSION_H
#define PYROMETER_SESSION_H

#include <jansson.h>

/* Appends a payload item (stolen; NULL is ignored) to the running cell's
 * execute_reply: a `page` from obj?, `set_next_input`, ... GIL held. */
void session_add_payload(json_t *item);

/* Returns the payload list collected during the cell (the caller owns it),
 * or NULL when there is none; the session's list is emptied. GIL held. */
json_t *session_take_payload(void);

#endif
