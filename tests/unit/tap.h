/* tap.h - a tiny Test Anything Protocol writer for the C unit tests.
 *
 * Each check prints "ok N - name" or "not ok N - name" with a diagnostic on
 * failure; tap_done_testing() prints the plan if none was given and returns the exit
 * status (1 if any check that is not a TODO failed).
 */
#ifndef PYROMETER_TAP_H
#define PYROMETER_TAP_H

#include <stddef.h>

/* Announces n checks ("1..n"). Optional: without it tap_done_testing() prints the plan. */
void tap_plan(int n);

/* Records one check; returns cond. The name is printf-formatted. */
int tap_ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Compares two strings (NULL compares equal only to NULL); on failure prints
 * both, escaped, as diagnostics. Returns 1 if equal. */
int tap_is_str(const char *got, const char *want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Compares two integers. Returns 1 if equal. */
int tap_is_int(long long got, long long want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Passes if needle occurs in haystack (a NULL haystack fails). */
int tap_like(const char *haystack, const char *needle, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Marks the following checks as TODO (known failures that do not fail the
 * run) until tap_todo_end(); reason is copied. */
void tap_todo(const char *reason);
void tap_todo_end(void);

/* Records a skipped check: "ok N - name # SKIP reason". */
void tap_skip(const char *name, const char *reason);

/* Prints a "# ..." diagnostic line. */
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Skips the test program with a reason ("1..0 # SKIP reason"); exits 0. */
void tap_skip_all(const char *reason) __attribute__((noreturn));

/* Finishes: prints the plan if tap_plan was not called, warns if the count
 * differs from the plan. Returns the exit status for main: 0, or 1 if a
 * non-TODO check failed or the plan was wrong. */
int tap_done_testing(void);

#endif
