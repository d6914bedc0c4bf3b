/* introspect.h - completion and inspection: complete_request,
 * inspect_request, and the text of obj? / obj??. */
#ifndef PYROMETER_INTROSPECT_H
#define PYROMETER_INTROSPECT_H

#include <jansson.h>

/* New complete_reply / inspect_reply contents. Called without the GIL. */
json_t *introspect_complete(const char *code, long cursor_pos);
json_t *introspect_inspect(const char *code, long cursor_pos, int detail_level);

/* The value of a dotted name in the user namespace (then builtins), found
 * by lookups and getattr only; a new reference, or NULL (no exception set)
 * when it does not resolve. GIL held. */
PyObject *introspect_object(const char *name);

/* The help text for a dotted name, or for "%magic" / "%%magic" (detail 0: signature and docstring;
 * 1: the source too), its field labels in ANSI red when colour is set, malloc'ed; NULL if the name
 * does not resolve (no exception set) or on error (exception set). GIL held. */
char *introspect_text(const char *name, int detail_level, int colour);

/* Adds __pyrometer__.inspect(name, level), what obj? and obj?? become: the
 * help text as a `page` payload. GIL held. Returns 0, or -1 with an
 * exception set. */
int introspect_install(PyObject *kmod);

#endif
