/* tap.c - the TAP writer behind tap.h. State is per process: the tests are
 * single-threaded. */
#include "tap.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* All of this is touched by the test's main thread only. */
static int planned = -1; /* -1: no plan printed yet */
static int run;
static int failed;
static char todo_reason[256];
static int in_todo;

void tap_plan(int n)
{
    planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

static int report(int cond, const char *fmt, va_list ap)
{
    run++;
    printf("%sok %d - ", cond ? "" : "not ", run);
    /* A name holding a newline or '#' would break the TAP line. */
    char name[512];
    vsnprintf(name, sizeof name, fmt, ap);
    for (char *c = name; *c; c++)
        if (*c == '\n' || *c == '#')
            *c = ' ';
    fputs(name, stdout);
    if (in_todo)
        printf(" # TODO %s", todo_reason);
    putchar('\n');
    if (!cond && !in_todo)
        failed++;
    fflush(stdout);
    return cond;
}

int tap_ok(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(cond, fmt, ap);
    va_end(ap);
    return cond;
}

/* Prints s as a C-like quoted string, escaping control and non-ASCII bytes. */
static void print_escaped(const char *s)
{
    if (s == NULL) {
        fputs("NULL", stdout);
        return;
    }
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '\n')
            fputs("\\n", stdout);
        else if (*c == '\t')
            fputs("\\t", stdout);
        else if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20 || *c >= 0x7f)
            printf("\\x%02x", *c);
        else
            putchar(*c);
    }
    putchar('"');
}

int tap_is_str(const char *got, const char *want, const char *fmt, ...)
{
    int eq = (got == NULL || want == NULL) ? got == want : strcmp(got, want) == 0;
    va_list ap;
    va_start(ap, fmt);
    report(eq, fmt, ap);
    va_end(ap);
    if (!eq) {
        fputs("#      got: ", stdout);
        print_escaped(got);
        fputs("\n# expected: ", stdout);
        print_escaped(want);
        putchar('\n');
    }
    return eq;
}

int tap_is_int(long long got, long long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(got == want, fmt, ap);
    va_end(ap);
    if (got != want)
        printf("#      got: %lld\n# expected: %lld\n", got, want);
    return got == want;
}

int tap_like(const char *haystack, const char *needle, const char *fmt, ...)
{
    int found = haystack != NULL && strstr(haystack, needle) != NULL;
    va_list ap;
    va_start(ap, fmt);
    report(found, fmt, ap);
    va_end(ap);
    if (!found) {
        fputs("#          got: ", stdout);
        print_escaped(haystack);
        fputs("\n# not containing: ", stdout);
        print_escaped(needle);
        putchar('\n');
    }
    return found;
}

void tap_skip(const char *name, const char *reason)
{
    run++;
    printf("ok %d - %s # SKIP %s\n", run, name, reason);
    fflush(stdout);
}

void tap_todo(const char *reason)
{
    snprintf(todo_reason, sizeof todo_reason, "%s", reason);
    in_todo = 1;
}

void tap_todo_end(void)
{
    in_todo = 0;
}

void tap_diag(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One "# " per line, so multi-line diagnostics stay comments. */
    for (char *s = line, *nl; s != NULL; s = nl ? nl + 1 : NULL) {
        nl = strchr(s, '\n');
        printf("# %.*s\n", nl ? (int)(nl - s) : (int)strlen(s), s);
    }
    fflush(stdout);
}

void tap_skip_all(const char *reason)
{
    printf("1..0 # SKIP %s\n", reason);
    fflush(stdout);
    exit(0);
}

int tap_done_testing(void)
{
    if (planned < 0) {
        printf("1..%d\n", run);
    } else if (planned != run) {
        printf("# planned %d tests but ran %d\n", planned, run);
        return 1;
    }
    if (failed)
        printf("# failed %d of %d tests\n", failed, run);
    fflush(stdout);
    return failed ? 1 : 0;
}
