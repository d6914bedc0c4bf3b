/* history.h - the input/output history behind history_request, kept in
 * SQLite under the Jupyter data dir so that it survives restarts, in the
 * shape IPython keeps it (sessions, history, output_history). */
#ifndef PYROMETER_HISTORY_H
#define PYROMETER_HISTORY_H

#include <jansson.h>

/* Opens (creating if needed) the history database and starts a new session.
 * Failure is logged and leaves history in memory only. Main thread. */
void history_open(void);

/* Records cell input / the text/plain of its result under the current
 * session and execution count: a writer thread commits it meanwhile.
 * history_store_input returns a ticket for history_wait. Main thread. */
long history_store_input(long count, const char *source);
void history_store_output(long count, const char *text_plain);

/* Returns once the input behind ticket is committed (at once for 0). */
void history_wait(long ticket);

/* Returns a new history_reply content for a history_request content. */
json_t *history_reply(json_t *request);

/* Ends the session (records its end time) and closes the database. */
void history_close(void);

#endif
