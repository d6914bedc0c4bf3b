/* history.h - the input/output history behind history_request, kept in
 * SQLite under the Jupyter data dir so that it survives restarts. */
#ifndef PYROMETER_HISTORY_H
#define PYROMETER_HISTORY_H

#include <jansson.h>

/* Returns a new history_reply content for a history_request content. */
json_t *history_reply(json_t *request);

#endif
