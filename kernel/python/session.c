/* session.c - what the parts of the Python side share about the running
 * session: the execute_reply payload collected while a cell runs. */
#include "session.h"

/* The payload of the running cell, or NULL. Protected by the GIL. */
static json_t *payload;

void session_add_payload(json_t *item)
{
    if (item == NULL)
        return;
    if (payload == NULL)
        payload = json_array();
    if (payload == NULL || json_array_append_new(payload, item) < 0)
        json_decref(item);
}

json_t *session_take_payload(void)
{
    json_t *p = payload;
    payload = NULL;
    return p;
}
