/* fuzz_transform.c - libFuzzer target: cell text -> transform_cell.
 * The contract checked: without a cell magic (which becomes one call), a
 * result has exactly as many lines as the cell, so tracebacks point at the
 * user's lines; a refusal gives a one-line reason. Inputs with a NUL are cut
 * at it, as the kernel receives C strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t lines(const char *s)
{
    size_t n = 1;
    for (; *s; s++)
        if (*s == '\n')
            n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *cell = malloc(size + 1);
    char err[256];
    if (cell == NULL)
        return 0;
    memcpy(cell, data, size);
    cell[size] = '\0';
    err[0] = '\0';
    char *out = transform_cell(cell, err, sizeof err);
    if (out != NULL) {
        if (strstr(cell, "%%") == NULL && lines(out) != lines(cell))
            abort();
        free(out);
    } else if (err[0] == '\0' || strchr(err, '\n') != NULL) {
        abort();
    }
    free(cell);
    return 0;
}
