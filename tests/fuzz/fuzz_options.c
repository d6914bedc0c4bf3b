/* fuzz_options.c - libFuzzer target: a magic's option line -> options_parse,
 * driven by every real option table the pyrometer module registers (%prun,
 * %lprun, %mprun, ...). The first byte picks the table, the rest (cut at a
 * NUL) is the line. Checked: an accepted line's statement is a suffix of it
 * that starts at a non-space; a refused one raises UsageError (or the
 * conversion's own error) whose message names the magic. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "module.h"
#include "options.h"

PyMODINIT_FUNC PyInit_pyrometer(void);

static PyObject *module, *usage_error; /* owned; protected by the GIL, held throughout */
static size_t n_tables;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (PyImport_AppendInittab("pyrometer", PyInit_pyrometer) < 0)
        abort();
    Py_InitializeEx(0);
    module = PyImport_ImportModule("pyrometer");
    usage_error = module ? PyObject_GetAttrString(module, "UsageError") : NULL;
    if (usage_error == NULL) {
        PyErr_Print();
        abort();
    }
    while (module_option_table(n_tables, NULL) != NULL)
        n_tables++;
    if (n_tables < 6)
        abort(); /* prun, pstats, lprun, memit, mprun, mprof at least */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *name;
    const options_magic *m = module_option_table(data[0] % n_tables, &name);
    char *line = malloc(size);
    if (line == NULL)
        return 0;
    memcpy(line, data + 1, size - 1);
    line[size - 1] = '\0';
    size_t len = strlen(line);
    options_parsed o = OPTIONS_PARSED_INIT;
    if (options_parse(module, m, line, &o) == 0) {
        if (PyErr_Occurred())
            abort();
        if (o.rest < line || o.rest > line + len)
            abort(); /* the statement is a suffix of the line */
        if (*o.rest != '\0' && isspace((unsigned char)*o.rest))
            abort();
        for (int i = 0; i < m->nspecs; i++)
            for (Py_ssize_t k = 0; k < options_count(&o, i); k++)
                (void)options_str_at(&o, i, k);
    } else {
        if (!PyErr_Occurred())
            abort(); /* -1 without an exception */
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyErr_NormalizeException(&type, &exc, &tb);
        if (exc != NULL && PyErr_GivenExceptionMatches(exc, usage_error)) {
            PyObject *s = PyObject_Str(exc);
            const char *text = s ? PyUnicode_AsUTF8(s) : NULL;
            if (text == NULL || strncmp(text, m->name, strlen(m->name)) != 0)
                abort(); /* every UsageError names its magic */
            Py_XDECREF(s);
        }
        Py_XDECREF(type);
        Py_XDECREF(exc);
        Py_XDECREF(tb);
        PyErr_Clear();
    }
    options_clear(&o);
    free(line);
    return 0;
}
