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
 * session and execution count; a writer thread commits it off the
 * request's path. Main thread. */
void history_store_input(long count, const char *source);
void history_store_output(long count, const char *text_plain);

/* Returns once every row recorded so far is committed. Main thread. */
void history_sync(void);

/* Waits for the writer only if it has fallen behind: a row queued 50 ms
 * ago or more is not committed yet (the machine gave the writer no CPU).
 * The kernel calls it before each cell, so a killed kernel loses at most
 * the rows of its last 10 ms, and while the writer starves, at most those
 * of its last 50 ms and the running cell. Main thread. */
void history_catch_up(void);

/* The database file and this kernel's session number in it, or NULL when
 * the history is kept in memory (or closed). Main thread. */
const char *history_file(long long *session_number);

/* Returns a new history_reply content for a history_request content. */
json_t *history_reply(json_t *request);

/* Ends the session (records its end time) and closes the database. */
void history_close(void);

#endif
