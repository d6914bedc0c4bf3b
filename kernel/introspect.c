/* introspect.c - completion and inspection (placeholder). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "introspect.h"

json_t *introspect_complete(const char *code, long cursor_pos)
{
    return json_pack("{s:s, s:[], s:I, s:I, s:{}}", "status", "ok", "matches", "cursor_start",
                     (json_int_t)cursor_pos, "cursor_end", (json_int_t)cursor_pos, "metadata");
}

json_t *introspect_inspect(const char *code, long cursor_pos, int detail_level)
{
    return json_pack("{s:s, s:b, s:{}, s:{}}", "status", "ok", "found", 0, "data", "metadata");
}

char *introspect_text(const char *name, int detail_level)
{
    return NULL;
}
