/* cases.c - listing and reading the case folders of the data-driven unit
 * tests (test_wire.c, test_connection.c). */
#include "cases.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#define MAX_CASES 256

char *cases_read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(4096);
    size_t n = buf ? fread(buf, 1, 4095, f) : 0;
    fclose(f);
    if (buf == NULL)
        return NULL;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    return buf;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void cases_run(const char *dir, const char *what, size_t min, void (*run)(const char *name))
{
    char *names[MAX_CASES];
    size_t count = 0;
    DIR *d = opendir(dir);
    if (!tap_ok(d != NULL, "opendir %s (run from tests/unit)", dir))
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL && count < MAX_CASES;)
        if (e->d_name[0] != '.' && (names[count] = strdup(e->d_name)) != NULL)
            count++;
    closedir(d);
    qsort(names, count, sizeof *names, compare_names);
    tap_ok(count >= min, "%zu %s cases found", count, what);
    for (size_t i = 0; i < count; i++) {
        run(names[i]);
        free(names[i]);
    }
}
