/* options.h - the option parser every magic uses, driven by a spec table.
 *
 * Each magic describes its options in a table of options_spec (short -x and
 * long --name forms, the kind of value) and gets back the values per option
 * plus the statement: the rest of the line after the options. Errors raise
 * pyrometer.UsageError as "%name: <message>\n<usage line>".
 */
#ifndef PYROMETER_OPTIONS_H
#define PYROMETER_OPTIONS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdarg.h>

/* The most options one magic may have (the length of its spec table). */
#define OPTIONS_MAX 12

typedef enum {
    OPTIONS_FLAG,  /* no value; stored as True */
    OPTIONS_STR,   /* a shell-style word: quotes anywhere in it are stripped */
    OPTIONS_EXPR,  /* a Python expression: up to whitespace outside brackets
                      and quotes, quotes kept (-f d['a b'].method) */
    OPTIONS_INT,   /* a word converted to int, >= min */
    OPTIONS_FLOAT, /* a word converted to a finite float, >= min (> min if strict) */
} options_kind;

typedef struct {
    char short_name;       /* 0 when the option is long-only */
    const char *long_name; /* NULL when the option is short-only */
    options_kind kind;
    int repeat;          /* 1: every value is kept (-f a -f b); 0: the last wins */
    double min;          /* OPTIONS_INT / OPTIONS_FLOAT: the smallest value */
    int strict;          /* OPTIONS_FLOAT: the value must be > min */
    const char *needs;   /* what a missing value is ("a function"); NULL: "a value" */
    const char *example; /* shown when the value is missing, or NULL */
    const char *bad;     /* OPTIONS_INT / OPTIONS_FLOAT: the message for a bad
                            value, with one %s for it; NULL for the default */
    const char *meta;    /* the value's name in the help ("FUNC"); NULL for a flag */
    const char *help;    /* what the option means, for the magic's help text */
} options_spec;

typedef struct {
    const char *name;  /* as the user writes it, for messages: "%prun", "%%mprof" */
    const char *usage; /* the usage line appended to every message */
    const options_spec *specs;
    int nspecs;     /* entries in specs, <= OPTIONS_MAX */
    int positional; /* 1: words that are not options are collected in
                       positional and parsing goes on (%pstats FILE -s KEY);
                       0: the first such word starts the statement */
    /* The help text (options_help): */
    const char *forms;   /* more usage lines after `usage` ("%%prun [options]"), or NULL */
    const char *summary; /* one line: what the magic does */
    const char *details; /* paragraphs after the summary, or NULL */
    const char *example; /* example lines, or NULL */
} options_magic;

typedef struct {
    PyObject *values[OPTIONS_MAX]; /* owned lists, indexed like the spec table;
                                      NULL when the option was not given */
    PyObject *positional;          /* owned list of str (only with positional) */
    const char *rest;              /* the statement: a suffix of the parsed line,
                                      starting at a non-space (or at its end) */
} options_parsed;

#define OPTIONS_PARSED_INIT                                                                        \
    {                                                                                              \
        {NULL}, NULL, ""                                                                           \
    }

/* Splits line as m describes. An option word is "-x..." (a letter) or
 * "--name[=value]"; short flags cluster (-rq) and the last letter of a
 * cluster may take the rest of the word or the next word as its value
 * (-l10, -l 10, -ql 10). "--" alone ends the options. Returns 0, or -1 with
 * an exception set (UsageError for bad options); *o must be cleared with
 * options_clear() either way. */
int options_parse(PyObject *module, const options_magic *m, const char *line, options_parsed *o);

void options_clear(options_parsed *o);

/* Accessors for option i (its index in the spec table). */
int options_given(const options_parsed *o, int i);
Py_ssize_t options_count(const options_parsed *o, int i);
/* The k-th value of a string option as UTF-8 (owned by *o), or NULL. */
const char *options_str_at(const options_parsed *o, int i, Py_ssize_t k);
/* The last value of option i (borrowed), or NULL when it was not given. */
PyObject *options_last(const options_parsed *o, int i);
long options_long(const options_parsed *o, int i, long dflt);
double options_double(const options_parsed *o, int i, double dflt);

/* Whether s holds only whitespace. */
int options_blank(const char *s);

/* The statement a line or cell magic runs, as a new str: the rest of the
 * line, then the cell (None for a line magic). When the line has no
 * statement the cell is the statement alone, so its line numbers are the
 * cell's own. NULL with an exception set. */
PyObject *options_statement(const options_parsed *o, PyObject *cell);

/* The magic's whole help, made from m: its usage lines, the summary, the
 * details, then every option of the spec table with its value's name and
 * meaning, then the example. The option list is the table itself, so it
 * cannot drift from what the parser accepts. Returns a new str, or NULL
 * with an exception set. */
PyObject *options_help(const options_magic *m);

/* Takes (clears) the pending exception and writes "TypeName: message" into
 * buf, for a UsageError that explains why a target could not be used. */
void options_take_error(char *buf, size_t n);

/* Raises pyrometer.UsageError (found on module) with
 * "<m->name>: <message>\n<m->usage>". Returns -1. */
int options_usage_error(PyObject *module, const options_magic *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same with the exception class given (cls NULL: ValueError). Returns -1. */
int options_raise_v(PyObject *cls, const options_magic *m, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
