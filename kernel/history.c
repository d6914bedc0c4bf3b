/* history.c - history_request (placeholder: empty history). */
#include "history.h"

void history_open(void)
{
}

void history_store_input(long count, const char *source)
{
}

void history_store_output(long count, const char *text_plain)
{
}

json_t *history_reply(json_t *request)
{
    return json_pack("{s:s, s:[]}", "status", "ok", "history");
}

void history_close(void)
{
}
