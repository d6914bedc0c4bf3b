/* history.c - history_request (placeholder: empty history). */
#include "history.h"

json_t *history_reply(json_t *request)
{
    return json_pack("{s:s, s:[]}", "status", "ok", "history");
}
