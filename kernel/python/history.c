/* history.c - the input/output history behind history_request: an SQLite
 * database in IPython's shape (sessions, history, output_history), a new
 * session at each start, in WAL mode. A writer thread commits the rows in
 * CPU time nobody else wants: a row waits at most HOLD_MS for others to
 * share its transaction, so a run of quick cells costs one commit, not one
 * each. A killed kernel loses at most the rows of its last HOLD_MS (more
 * only while the machine gives the writer no CPU, and never rows older
 * than LATE_MS when a cell starts). Every history_request waits until all
 * earlier rows are committed. */
#include "history.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kthread.h"
#include "log.h"
#include "paths.h"
#include "transform.h"

/* The kernel calls history_* only from the main thread. The connection is
 * used by the writer thread while jobs are pending and by the main thread
 * only when none are (history_reply and history_close wait for that). */
static sqlite3 *db;              /* owned; NULL before open / after close */
static sqlite3_stmt *ins_input;  /* owned: INSERT of one input (writer thread) */
static sqlite3_stmt *ins_output; /* owned: INSERT of one output (writer thread) */
static sqlite3_int64 session;    /* this kernel's session number */
static long n_cmds;              /* inputs stored in this session (main thread) */
static int write_failed;         /* a write failed: logged once (writer thread) */
static char db_file[4096];       /* the open file's path; "" when in memory or closed */

/* One row to write. */
typedef struct job {
    struct job *next;
    int output; /* output_history rather than history */
    long count; /* execution count */
    char *text; /* owned: the source as typed, or the output */
} job;

/* A row waits at most HOLD_MS for company before its commit. A cell that
 * starts while a row has waited LATE_MS (the writer was starved of CPU)
 * waits for the commit first. */
#define HOLD_MS 10
#define LATE_MS 50

/* The writer's queue. Protected by q_lock. */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_work = PTHREAD_COND_INITIALIZER; /* jobs, a flush, or stop */
static pthread_cond_t q_done = PTHREAD_COND_INITIALIZER; /* done_seq moved */
static job *q_head, *q_tail;
static struct timespec q_since; /* when q_head was queued (CLOCK_MONOTONIC) */
static int writer_waiting, writer_stop, flush_wanted, done_waiters;
static long queued_seq;      /* jobs ever queued */
static atomic_long done_seq; /* jobs ever written */
static pthread_t writer;     /* runs while have_writer */
static int have_writer;      /* main thread */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS sessions (session integer primary key autoincrement,"
    " start timestamp, end timestamp, num_cmds integer, remark text);"
    "CREATE TABLE IF NOT EXISTS history (session integer, line integer, source text,"
    " source_raw text, PRIMARY KEY (session, line));"
    "CREATE TABLE IF NOT EXISTS output_history (session integer, line integer, output text,"
    " PRIMARY KEY (session, line));";

#define NOW "strftime('%Y-%m-%d %H:%M:%f', 'now', 'localtime')"

/* Writes the database path into buf: $PYROMETER_HISTORY, else
 * <Jupyter data dir>/pyrometer/history.sqlite, creating its directory.
 * Returns 0, or -1 when there is no usable path (":memory:" is written). */
static int db_path(char *buf, size_t len)
{
    const char *env = getenv("PYROMETER_HISTORY");
    if (env != NULL && *env != '\0') {
        snprintf(buf, len, "%s", env);
        char *slash = strrchr(buf, '/');
        if (slash != NULL && slash != buf && strcmp(buf, ":memory:") != 0) {
            *slash = '\0';
            if (paths_mkdirs(buf, 0700) < 0)
                log_msg("history: cannot create %s: %s", buf, strerror(errno));
            *slash = '/';
        }
        return 0;
    }
    if (paths_jupyter_data_dir(buf, len) < 0)
        goto memory;
    size_t used = strlen(buf);
    if (used + sizeof "/pyrometer/history.sqlite" > len)
        goto memory;
    strcat(buf, "/pyrometer");
    if (paths_mkdirs(buf, 0700) < 0) {
        log_msg("history: cannot create %s: %s", buf, strerror(errno));
        goto memory;
    }
    strcat(buf, "/history.sqlite");
    return 0;
memory:
    snprintf(buf, len, ":memory:");
    return -1;
}

static void close_db(void)
{
    sqlite3_finalize(ins_input);
    sqlite3_finalize(ins_output);
    ins_input = ins_output = NULL;
    sqlite3_close(db);
    db = NULL;
    db_file[0] = '\0';
}

/* Opens path, sets it up and starts a session. Returns SQLITE_OK, or an
 * SQLite error code with the database closed and the reason logged. */
static int open_at(const char *path)
{
    char *errmsg = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK)
        goto error;
    sqlite3_busy_timeout(db, 2000); /* other kernels share the file */
    rc = sqlite3_exec(db,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                      " BEGIN IMMEDIATE;",
                      NULL, NULL, &errmsg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, schema, NULL, NULL, &errmsg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db,
                          "INSERT INTO sessions VALUES (NULL, " NOW ", NULL, NULL, '');"
                          " COMMIT;",
                          NULL, NULL, &errmsg);
    if (rc != SQLITE_OK)
        goto error;
    session = sqlite3_last_insert_rowid(db);
    snprintf(db_file, sizeof db_file, "%s", strcmp(path, ":memory:") == 0 ? "" : path);
    rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?)", -1,
                            &ins_input, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO output_history VALUES (?, ?, ?)", -1,
                                &ins_output, NULL);
    if (rc != SQLITE_OK)
        goto error;
    return SQLITE_OK;
error:
    log_msg("history: cannot open %s: %s", path,
            errmsg ? errmsg
            : db   ? sqlite3_errmsg(db)
                   : sqlite3_errstr(rc));
    sqlite3_free(errmsg);
    if (db != NULL)
        rc = sqlite3_extended_errcode(db) & 0xff;
    close_db();
    return rc;
}

/* Opens the file, a fresh one if it was damaged, or else :memory:. */
static void open_db(void)
{
    char path[4096];
    if (db_path(path, sizeof path) == 0) {
        int rc = open_at(path);
        if (rc == SQLITE_OK)
            return;
        if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) {
            /* As IPython does: keep the damaged file aside, start afresh. */
            char aside[4200];
            snprintf(aside, sizeof aside, "%s-corrupt-%ld", path, (long)time(NULL));
            if (rename(path, aside) == 0) {
                log_msg("history: %s was damaged; moved it to %s", path, aside);
                if (open_at(path) == SQLITE_OK)
                    return;
            }
        }
    }
    log_msg("history: keeping this session's history in memory only");
    if (open_at(":memory:") != SQLITE_OK)
        log_msg("history: no history for this session");
}

/* Runs a prepared INSERT and resets it; logs the first failure only.
 * Writer thread (or the main thread when there is no writer). */
static void step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && !write_failed) {
        write_failed = 1;
        log_msg("history: cannot record: %s", sqlite3_errmsg(db));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static void write_job(const job *j)
{
    char err[256];
    if (j->output) {
        sqlite3_bind_int64(ins_output, 1, session);
        sqlite3_bind_int64(ins_output, 2, j->count);
        sqlite3_bind_text(ins_output, 3, j->text, -1, SQLITE_STATIC);
        step(ins_output);
        return;
    }
    char *translated = transform_cell(j->text, err, sizeof err);
    sqlite3_bind_int64(ins_input, 1, session);
    sqlite3_bind_int64(ins_input, 2, j->count);
    sqlite3_bind_text(ins_input, 3, translated ? translated : j->text, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins_input, 4, j->text, -1, SQLITE_STATIC);
    step(ins_input);
    free(translated);
}

static long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000L + (t.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* Writes the queued jobs, each batch in one transaction, until stopped.
 * A batch is what was queued within HOLD_MS of its first job, or until
 * somebody waits for it. */
static void *writer_main(void *arg)
{
    (void)arg;
    /* SCHED_IDLE: the commit takes only CPU time nobody else wants, so it
     * never delays the cell, the replies or libzmq's I/O thread. On a
     * 2-core machine it would otherwise preempt the main thread it was
     * woken from (measured: round trip 296 -> 274 us). history_catch_up
     * bounds how long it can be starved. */
    struct sched_param sp = {0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        log_msg("history: the writer runs at normal priority");
    pthread_mutex_lock(&q_lock);
    for (;;) {
        while (q_head == NULL && !writer_stop) {
            writer_waiting = 1;
            pthread_cond_wait(&q_work, &q_lock);
            writer_waiting = 0;
        }
        if (q_head == NULL)
            break;
        long ns = q_since.tv_nsec + HOLD_MS * 1000000L;
        struct timespec due = {q_since.tv_sec + ns / 1000000000L, ns % 1000000000L};
        while (!writer_stop && !flush_wanted &&
               pthread_cond_clockwait(&q_work, &q_lock, CLOCK_MONOTONIC, &due) == 0)
            ; /* woken: by a flush or stop, or for nothing */
        job *jobs = q_head;
        long last = queued_seq;
        q_head = q_tail = NULL;
        flush_wanted = 0;
        pthread_mutex_unlock(&q_lock);
        int batch = jobs->next != NULL;
        if (batch)
            sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        for (job *j = jobs; j != NULL;) {
            job *next = j->next;
            write_job(j);
            free(j->text);
            free(j);
            j = next;
        }
        if (batch)
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        atomic_store(&done_seq, last);
        pthread_mutex_lock(&q_lock);
        if (done_waiters)
            pthread_cond_broadcast(&q_done);
    }
    pthread_mutex_unlock(&q_lock);
    return NULL;
}

/* Queues a row for the writer (or writes it at once without one). */
static void submit(int output, long count, const char *text)
{
    job *j = calloc(1, sizeof *j);
    if (j != NULL)
        j->text = strdup(text);
    if (j == NULL || j->text == NULL) {
        free(j);
        log_msg("history: out of memory, not recorded");
        return;
    }
    j->output = output;
    j->count = count;
    if (!have_writer) {
        write_job(j);
        free(j->text);
        free(j);
        return;
    }
    pthread_mutex_lock(&q_lock);
    if (q_tail) {
        q_tail->next = j; /* the writer is holding q_head: no need to wake it */
    } else {
        q_head = j;
        clock_gettime(CLOCK_MONOTONIC, &q_since);
        if (writer_waiting)
            pthread_cond_signal(&q_work);
    }
    q_tail = j;
    ++queued_seq;
    pthread_mutex_unlock(&q_lock);
}

void history_store_input(long count, const char *source)
{
    if (db == NULL || source == NULL)
        return;
    n_cmds++;
    submit(0, count, source);
}

void history_store_output(long count, const char *text_plain)
{
    if (db == NULL || text_plain == NULL)
        return;
    submit(1, count, text_plain);
}

/* Returns once every row queued so far is committed, the writer told to
 * stop holding them. Called with q_lock held. */
static void flush_locked(void)
{
    long last = queued_seq;
    if (atomic_load(&done_seq) >= last)
        return;
    flush_wanted = 1;
    pthread_cond_signal(&q_work);
    done_waiters++;
    while (atomic_load(&done_seq) < last)
        pthread_cond_wait(&q_done, &q_lock);
    done_waiters--;
    flush_wanted = 0; /* nothing new was queued meanwhile: only we queue */
}

void history_sync(void)
{
    if (!have_writer)
        return;
    pthread_mutex_lock(&q_lock);
    flush_locked();
    pthread_mutex_unlock(&q_lock);
}

const char *history_file(long long *session_number)
{
    if (db == NULL || db_file[0] == '\0')
        return NULL;
    *session_number = session;
    return db_file;
}

void history_catch_up(void)
{
    if (!have_writer)
        return;
    pthread_mutex_lock(&q_lock);
    if (q_head != NULL && ms_since(&q_since) >= LATE_MS)
        flush_locked();
    pthread_mutex_unlock(&q_lock);
}

static void start_writer(void)
{
    writer_stop = 0;
    have_writer = kthread_start(&writer, writer_main, NULL) == 0;
    if (!have_writer)
        log_msg("history: no writer thread; recording on the main thread");
}

void history_open(void)
{
    if (db != NULL)
        return;
    n_cmds = 0;
    write_failed = 0;
    open_db();
    if (db != NULL)
        start_writer();
}

static void stop_writer(void)
{
    if (!have_writer)
        return;
    pthread_mutex_lock(&q_lock);
    writer_stop = 1;
    pthread_cond_signal(&q_work);
    pthread_mutex_unlock(&q_lock);
    pthread_join(writer, NULL);
    have_writer = 0;
}

/* ---- history_request ------------------------------------------------------ */

static json_int_t int_field(json_t *req, const char *name, json_int_t dflt)
{
    json_t *v = json_object_get(req, name);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static json_t *error_reply(const char *ename, const char *evalue)
{
    return json_pack("{s:s, s:s, s:s, s:[], s:[]}", "status", "error", "ename", ename, "evalue",
                     evalue, "traceback", "history");
}

/* Runs sql (its ?s bound from the int64s in ints, then text, if any) and
 * appends one entry per row (s, l, src, out) to a new list. Returns the
 * list, or NULL with the reason in err. */
static json_t *query(const char *sql, const sqlite3_int64 *ints, int n_ints, const char *text,
                     int output, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    json_t *list = json_array();
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK || list == NULL)
        goto error;
    for (int i = 0; i < n_ints; i++)
        sqlite3_bind_int64(st, i + 1, ints[i]);
    if (text != NULL)
        sqlite3_bind_text(st, n_ints + 1, text, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(st, 2);
        const char *out = (const char *)sqlite3_column_text(st, 3);
        json_t *in = json_string(src ? src : "");
        if (in == NULL) /* not UTF-8: cannot happen for cells, but never fail */
            in = json_string("");
        json_t *item = output ? json_pack("[o, s?]", in, out) : in;
        if (item == NULL ||
            json_array_append_new(list,
                                  json_pack("[I, I, o]", (json_int_t)sqlite3_column_int64(st, 0),
                                            (json_int_t)sqlite3_column_int64(st, 1), item)) < 0)
            goto error;
    }
    if (rc != SQLITE_DONE)
        goto error;
    sqlite3_finalize(st);
    return list;
error:
    snprintf(err, errlen, "%s", db ? sqlite3_errmsg(db) : "no database");
    sqlite3_finalize(st);
    json_decref(list);
    return NULL;
}

json_t *history_reply(json_t *request)
{
    const char *type = json_string_value(json_object_get(request, "hist_access_type"));
    int output = json_is_true(json_object_get(request, "output"));
    int raw = json_is_true(json_object_get(request, "raw"));
    const char *src = raw ? "h.source_raw" : "h.source";
    const char *out = output ? "o.output" : "NULL";
    const char *join = output ? " LEFT JOIN output_history o"
                                " ON o.session = h.session AND o.line = h.line"
                              : "";
    char sql[1024], err[256];
    sqlite3_int64 ints[3];
    const char *text = NULL;
    int n_ints = 0;

    if (type == NULL)
        type = "";
    if (db == NULL)
        return json_pack("{s:s, s:[]}", "status", "ok", "history");
    history_sync(); /* every cell so far is in the answer; the writer is idle */
    if (strcmp(type, "tail") == 0) {
        /* The last n inputs of this session, made up to n from the latest
         * of the others (other kernels may write this file meanwhile), the
         * others' first; oldest first within each: IPython's get_tail. */
        ints[n_ints++] = session;
        ints[n_ints++] = int_field(request, "n", 10);
        snprintf(sql, sizeof sql,
                 "SELECT * FROM (SELECT h.session AS s, h.line AS l, %s, %s,"
                 " h.session = ?1 AS cur FROM history h%s"
                 " ORDER BY cur DESC, h.session DESC, h.line DESC LIMIT ?2) ORDER BY cur, s, l",
                 src, out, join);
    } else if (strcmp(type, "range") == 0) {
        /* session 0 is this one, -1 the one before, ...; lines [start, stop) */
        sqlite3_int64 sess = int_field(request, "session", 0);
        sqlite3_int64 stop = int_field(request, "stop", 0);
        ints[n_ints++] = sess <= 0 ? session + sess : sess;
        ints[n_ints++] = int_field(request, "start", 1);
        ints[n_ints++] = stop > 0 ? stop : INT64_MAX;
        snprintf(sql, sizeof sql,
                 "SELECT h.session, h.line, %s, %s FROM history h%s WHERE h.session = ?"
                 " AND h.line >= ? AND h.line < ? ORDER BY h.line",
                 src, out, join);
    } else if (strcmp(type, "search") == 0) {
        /* Glob over every session; unique keeps the latest of equal inputs;
         * n keeps the last n matches. */
        json_int_t n = int_field(request, "n", -1);
        int unique = json_is_true(json_object_get(request, "unique"));
        text = json_string_value(json_object_get(request, "pattern"));
        if (text == NULL)
            text = "*";
        snprintf(sql, sizeof sql,
                 "SELECT * FROM (SELECT h.session AS s, h.line AS l, %s AS src, %s%s"
                 " FROM history h%s WHERE %s GLOB ?1%s"
                 " ORDER BY h.session DESC, h.line DESC LIMIT %lld) ORDER BY s, l",
                 src, out, unique ? ", max(h.session * 4294967296 + h.line)" : "", join, src,
                 unique ? " GROUP BY src" : "", n > 0 ? (long long)n : -1LL);
    } else {
        snprintf(err, sizeof err, "unknown hist_access_type '%.64s'", type);
        return error_reply("ValueError", err);
    }
    json_t *list = query(sql, ints, n_ints, text, output, err, sizeof err);
    if (list == NULL) {
        log_msg("history: %s", err);
        return error_reply("RuntimeError", err);
    }
    return json_pack("{s:s, s:o}", "status", "ok", "history", list);
}

void history_close(void)
{
    sqlite3_stmt *st = NULL;
    if (db == NULL)
        return;
    stop_writer(); /* it writes what is queued first */
    if (sqlite3_prepare_v2(db, "UPDATE sessions SET end = " NOW ", num_cmds = ? WHERE session = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, n_cmds);
        sqlite3_bind_int64(st, 2, session);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    close_db();
}
