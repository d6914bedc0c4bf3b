/* cases.h - data-driven C unit tests: one folder per case under a cases
 * directory (wire_cases/, connection_cases/), read in name order.
 */
#ifndef PYROMETER_CASES_H
#define PYROMETER_CASES_H

#include <stddef.h>

/* Returns the file's text (at most 4095 bytes, trailing newlines removed) in
 * a malloc'd string the caller frees, or NULL if it cannot be read. */
char *cases_read_text(const char *path);

/* Calls run(name) for every case folder in dir (names not starting with
 * '.'), sorted by name; records a check that dir can be opened (run from
 * tests/unit) and one that at least min "<what> cases" were found. */
void cases_run(const char *dir, const char *what, size_t min, void (*run)(const char *name));

#endif
