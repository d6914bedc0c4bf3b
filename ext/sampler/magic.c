/* sampler/magic.c - the %sample, %%sample and %autosample magics, and the
 * cell hooks that keep a sampler under every cell.
 *
 * Owns the option specs, running a statement under a sampler session, the
 * autosample session and the previous cell's profile (%sample --last), the
 * -r result and the export files. The kernel calls pyrometer._pre_cell()
 * and pyrometer._post_cell(exc) around every cell; under IPython,
 * %autosample registers the same two on its pre/post_run_cell events.
 */
#include "module.h"
#include "options.h"
#include "report.h"
#include "sampler/render.h"
#include "sampler/sampler.h"

#include <string.h>

/* ---- option specs ------------------------------------------------------------ */

enum {
    OPT_I,
    OPT_MODE,
    OPT_THREADS,
    OPT_ASYNC,
    OPT_COLLAPSED,
    OPT_SPEEDSCOPE,
    OPT_R,
    OPT_LAST,
    OPT_L
};
enum { AOPT_I, AOPT_MODE, AOPT_THREADS };

#define SECONDS_BAD "-i %s: the interval is a number of seconds, e.g. -i 0.001"

static const options_spec sample_specs[] = {
    [OPT_I] = {'i', NULL, OPTIONS_FLOAT, 0, 0.0, 1, .example = "-i 0.001", .bad = SECONDS_BAD,
               .meta = "SECONDS", .help = "the time between samples; default 0.001"},
    [OPT_MODE] = {0, "mode", OPTIONS_STR, .example = "--mode cpu", .meta = "MODE",
                  .help = "wall (default): elapsed time, waiting (sleep, I/O, locks) included; "
                          "cpu: CPU time only"},
    [OPT_THREADS] = {0, "threads", OPTIONS_FLAG,
                     .help = "sample every thread, not only the one running the statement"},
    [OPT_ASYNC] = {0, "async", OPTIONS_FLAG,
                   .help = "show asyncio tasks as their coroutine stacks, not the event loop's"},
    [OPT_COLLAPSED] = {0, "collapsed", OPTIONS_STR, .example = "--collapsed stacks.txt",
                       .meta = "FILE",
                       .help = "write the stacks in flamegraph.pl's collapsed format (speedscope "
                               "and inferno read it too)"},
    [OPT_SPEEDSCOPE] = {0, "speedscope", OPTIONS_STR, .example = "--speedscope profile.json",
                        .meta = "FILE", .help = "write speedscope's JSON file format"},
    [OPT_R] = {'r', NULL, OPTIONS_FLAG, .help = "return the profile as a pyrometer.SampleProfile"},
    [OPT_LAST] = {0, "last", OPTIONS_FLAG,
                  .help = "show the previous cell's profile (needs %autosample on); also after "
                          "an interrupted cell"},
    [OPT_L] = {'l', NULL, OPTIONS_INT, 0, 1.0, .example = "-l 60", .meta = "ROWS",
               .help = "rows of the call tree to show, the largest first; default 30"},
};

static const options_magic sample_magic_spec = {
    "%sample",
    "Usage: %sample [-i SECONDS] [--mode wall|cpu] [--threads] [--async] [--collapsed FILE] "
    "[--speedscope FILE] [-l ROWS] [-r] STATEMENT",
    sample_specs,
    sizeof sample_specs / sizeof sample_specs[0],
    0,
    .forms = "%%sample [options]   (the cell body is sampled)\n"
             "%sample --last [--async] [--collapsed FILE] [--speedscope FILE] [-l ROWS] [-r]",
    .summary = "Sample where a statement spends its time, at a cost that does not grow with "
               "its calls.",
    .details = "A sampler thread reads the running frames every interval without the GIL and\n"
               "without a profile hook. Shows a condensed call tree (library frames folded\n"
               "unless hot), a flame graph, and the line heat of code defined in cells.",
    .example = "  %sample -i 0.005 main()\n"
               "  %sample --mode cpu --collapsed stacks.txt main()\n"
               "  %autosample on   (then, after any cell)   %sample --last"};

static const options_spec autosample_specs[] = {
    [AOPT_I] = {'i', NULL, OPTIONS_FLOAT, 0, 0.0, 1, .example = "-i 0.001", .bad = SECONDS_BAD,
                .meta = "SECONDS", .help = "the time between samples; default 0.001"},
    [AOPT_MODE] = {0, "mode", OPTIONS_STR, .example = "--mode cpu", .meta = "MODE",
                   .help = "wall (default) or cpu, as for %sample"},
    [AOPT_THREADS] = {0, "threads", OPTIONS_FLAG, .help = "sample every thread"},
};

static const options_magic autosample_magic_spec = {
    "%autosample",
    "Usage: %autosample on|off [-i SECONDS] [--mode wall|cpu] [--threads]",
    autosample_specs,
    sizeof autosample_specs / sizeof autosample_specs[0],
    1,
    .summary = "Keep a sampler under every cell, so %sample --last can show the previous one.",
    .details = "on: a sampler thread records each cell as it runs (it sleeps between cells);\n"
               "%sample --last shows the previous cell's profile, also after an interrupted\n"
               "cell, whose KeyboardInterrupt says so. off: the thread ends. Without on or\n"
               "off: says whether it is on.",
    .example = "  %autosample on\n"
               "  %sample --last"};

#define LAST_NOTE "%sample --last shows where this cell spent its time."

/* ---- autosample state (protected by the GIL) -------------------------------------- */

static sampler_session *auto_session; /* NULL when %autosample is off */
static sampler_config auto_config;
static PyObject *last_profile;  /* owned: the previous cell's profile, once converted */
static PyObject *ipython_shell; /* owned: the shell whose events call the hooks, or NULL */

/* ---- running a statement -------------------------------------------------------------- */

/* Makes linecache know src as "<sample>", so line heat can show it. */
static int register_source(PyObject *src)
{
    PyObject *lc = PyImport_ImportModule("linecache"), *cache = NULL, *lines = NULL;
    PyObject *entry = NULL, *name = NULL;
    int rc = -1;
    if (lc == NULL)
        return -1;
    cache = PyObject_GetAttrString(lc, "cache");
    lines = PyObject_CallMethod(src, "splitlines", "(O)", Py_True);
    if (cache == NULL || lines == NULL)
        goto done;
    entry = Py_BuildValue("(nOOs)", PyUnicode_GET_LENGTH(src), Py_None, lines, "<sample>");
    name = PyUnicode_FromString("<sample>");
    if (entry == NULL || name == NULL || PyObject_SetItem(cache, name, entry) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(lc);
    Py_XDECREF(cache);
    Py_XDECREF(lines);
    Py_XDECREF(entry);
    Py_XDECREF(name);
    return rc;
}

/* Reads --mode into *mode. Returns 0, or -1 with a UsageError. */
static int parse_mode(PyObject *module, const options_magic *m, const options_parsed *o, int i,
                      sampler_mode *mode)
{
    const char *s = options_given(o, i) ? options_str_at(o, i, options_count(o, i) - 1) : "wall";
    if (s == NULL)
        return -1;
    if (strcmp(s, "wall") == 0)
        *mode = SAMPLER_WALL;
    else if (strcmp(s, "cpu") == 0)
        *mode = SAMPLER_CPU;
    else
        return options_usage_error(module, m,
                                   "--mode %s: the mode is wall (time, waiting included) or cpu "
                                   "(CPU time only), e.g. --mode cpu",
                                   s);
    return 0;
}

/* Returns a new profile dict like prof with its stacks replaced by the
 * views the options ask for; NULL with an exception set. */
static PyObject *apply_views(PyObject *prof, int from_cell, int async)
{
    PyObject *out = PyDict_Copy(prof);
    if (out == NULL)
        return NULL;
    PyObject *stacks = Py_NewRef(PyDict_GetItemString(out, "stacks"));
    int cut = 0;
    if (from_cell)
        Py_SETREF(stacks, sample_render_from_cell(stacks, &cut));
    if (stacks != NULL && async)
        Py_SETREF(stacks, sample_render_async(stacks));
    if (stacks == NULL || PyDict_SetItemString(out, "stacks", stacks) < 0 ||
        (cut && PyDict_SetItemString(out, "from_cell", Py_True) < 0)) {
        Py_XDECREF(stacks);
        Py_DECREF(out);
        return NULL;
    }
    Py_DECREF(stacks);
    return out;
}

static PyObject *result_class; /* owned, made on first use; protected by the GIL */

static const char result_class_src[] =
    "class SampleProfile:\n"
    "    \"\"\"What %sample -r returns.\n\n"
    "    stacks: [(thread, frames, samples, seconds)], frames outermost first, each\n"
    "    (filename, qualname, firstlineno, line, is_coroutine); duration, samples,\n"
    "    interval, mode ('wall' or 'cpu'), threads {label: native id}.\"\"\"\n"
    "    __module__ = 'pyrometer'\n"
    "    def __init__(self, profile):\n"
    "        self.__dict__.update(profile)\n"
    "    @property\n"
    "    def seconds(self):\n"
    "        \"\"\"Seconds sampled, over every stack.\"\"\"\n"
    "        return sum(s[3] for s in self.stacks)\n"
    "    def inclusive(self):\n"
    "        \"\"\"{qualname: seconds of the stacks it is in}.\"\"\"\n"
    "        out = {}\n"
    "        for _, frames, _, secs in self.stacks:\n"
    "            for name in {f[1] for f in frames}:\n"
    "                out[name] = out.get(name, 0.0) + secs\n"
    "        return out\n"
    "    def share(self, qualname):\n"
    "        \"\"\"The share of sampled time spent in qualname or below it.\"\"\"\n"
    "        total = self.seconds\n"
    "        return self.inclusive().get(qualname, 0.0) / total if total else 0.0\n"
    "    def collapsed(self):\n"
    "        \"\"\"The stacks in flamegraph.pl's collapsed format.\"\"\"\n"
    "        return _collapsed(self.__dict__)\n"
    "    def __repr__(self):\n"
    "        return '<SampleProfile %s: %.3f s in %d samples>' % (self.mode, self.seconds, "
    "self.samples)\n";

static PyObject *collapsed_fn(PyObject *module, PyObject *prof)
{
    report_buf b = REPORT_BUF_INIT;
    if (!PyDict_Check(prof)) {
        PyErr_SetString(PyExc_TypeError, "_collapsed: expected a profile dict");
        return NULL;
    }
    if (sample_render_collapsed(prof, &b) < 0) {
        report_buf_free(&b);
        return NULL;
    }
    PyObject *s = report_buf_to_str(&b);
    report_buf_free(&b);
    return s;
}

static PyMethodDef collapsed_def = {"_collapsed", collapsed_fn, METH_O, NULL};

/* Returns a new SampleProfile for prof, or NULL with an exception set. */
static PyObject *result_new(PyObject *module, PyObject *prof)
{
    if (result_class == NULL) {
        PyObject *fn = PyCFunction_NewEx(&collapsed_def, module, NULL);
        PyObject *globals =
            fn ? Py_BuildValue("{s:O,s:s,s:O}", "__builtins__", PyEval_GetBuiltins(), "__name__",
                               "pyrometer", "_collapsed", fn)
               : NULL;
        Py_XDECREF(fn);
        if (globals == NULL)
            return NULL;
        PyObject *r = PyRun_String(result_class_src, Py_file_input, globals, globals);
        if (r == NULL) {
            Py_DECREF(globals);
            return NULL;
        }
        Py_DECREF(r);
        result_class = PyDict_GetItemString(globals, "SampleProfile");
        Py_XINCREF(result_class);
        Py_DECREF(globals);
        if (result_class == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "pyrometer: could not make SampleProfile");
            return NULL;
        }
    }
    return PyObject_CallOneArg(result_class, prof);
}

/* Writes one export: returns 0, or -1 with an exception set; a line for
 * the report goes to notes. */
static int write_export(PyObject *given, PyObject *body, const char *what, report_buf *notes)
{
    PyObject *os = PyImport_ImportModule("os.path");
    PyObject *path = os ? PyObject_CallMethod(os, "expanduser", "(O)", given) : NULL;
    Py_XDECREF(os);
    if (path == NULL)
        return -1;
    int rc = report_write_text(path, body);
    Py_DECREF(path);
    if (rc < 0)
        return -1;
    PyObject *rep = PyObject_Repr(given);
    if (rep == NULL)
        return -1;
    report_buf_printf(notes, "*** %s written to %s.\n", what, PyUnicode_AsUTF8(rep));
    Py_DECREF(rep);
    return 0;
}

/* Shows prof (views applied) and writes its exports. Returns the -r value
 * (a new reference, None without -r) or NULL with an exception set. */
static PyObject *report(PyObject *module, PyObject *prof, const options_parsed *o,
                        const char *title, PyObject *display)
{
    report_buf tb = REPORT_BUF_INIT, hb = REPORT_BUF_INIT, notes = REPORT_BUF_INIT;
    PyObject *result = NULL, *bundle = NULL, *text = NULL;

    if (options_given(o, OPT_COLLAPSED)) {
        report_buf c = REPORT_BUF_INIT;
        int rc = sample_render_collapsed(prof, &c);
        text = rc == 0 ? report_buf_to_str(&c) : NULL;
        report_buf_free(&c);
        if (text == NULL ||
            write_export(options_last(o, OPT_COLLAPSED), text, "Collapsed stacks", &notes) < 0)
            goto done;
        Py_CLEAR(text);
    }
    if (options_given(o, OPT_SPEEDSCOPE)) {
        text = sample_render_speedscope(prof);
        if (text == NULL ||
            write_export(options_last(o, OPT_SPEEDSCOPE), text, "speedscope profile", &notes) < 0)
            goto done;
        Py_CLEAR(text);
    }
    if (sample_render_report(prof, title, (int)options_long(o, OPT_L, REPORT_DEFAULT_ROWS), &tb,
                             &hb) < 0)
        goto done;
    if (notes.len) { /* after the report's own closing </div>, in the same font */
        report_buf_puts(&tb, "\n");
        report_buf_append(&tb, notes.data, notes.len);
        report_html_open(&hb);
        report_buf_puts(&hb, "<div style=\"white-space:pre-wrap\">");
        report_buf_html(&hb, notes.data, notes.len);
        report_buf_puts(&hb, "</div>");
        report_html_close(&hb);
    }
    bundle = report_bundle_new(&tb, &hb);
    if (bundle == NULL)
        goto done;
    PyObject *r = PyObject_CallOneArg(display, bundle);
    if (r == NULL)
        goto done;
    Py_DECREF(r);
    result = options_given(o, OPT_R) ? result_new(module, prof) : Py_NewRef(Py_None);
done:
    Py_XDECREF(bundle);
    Py_XDECREF(text);
    report_buf_free(&tb);
    report_buf_free(&hb);
    report_buf_free(&notes);
    return result;
}

/* The previous cell's profile (converted on first use, then kept for the
 * rest of this cell). Returns a borrowed reference, or NULL with a
 * UsageError explaining why there is none. */
static PyObject *previous_profile(PyObject *module)
{
    if (last_profile != NULL)
        return last_profile;
    if (auto_session == NULL) {
        options_usage_error(module, &sample_magic_spec,
                            "--last needs a sampler under every cell: run %%autosample on, then "
                            "the cell, then %%sample --last");
        return NULL;
    }
    sampler_data *d = sampler_take_last(auto_session);
    if (d == NULL) {
        options_usage_error(module, &sample_magic_spec,
                            "no previous cell was sampled yet; run a cell, then %%sample --last");
        return NULL;
    }
    last_profile = sampler_data_to_python(d);
    sampler_data_free(d);
    return last_profile;
}

PyDoc_STRVAR(sample_doc,
             "sample(line, cell, ns, display)\n--\n\n"
             "%sample [-i SECONDS] [--mode wall|cpu] [--threads] [--async] [--collapsed FILE]\n"
             "        [--speedscope FILE] [-l ROWS] [-r] STATEMENT\n"
             "%%sample [options]  (the cell body follows)\n"
             "%sample --last [--async] [--collapsed FILE] [--speedscope FILE] [-l ROWS] [-r]\n\n"
             "Run the statement under pyrometer's statistical profiler: a sampler thread reads\n"
             "the running frames every interval (default 0.001 s), whatever the number of\n"
             "calls. Shows a condensed call tree (library frames folded unless hot), a flame\n"
             "graph, and the line heat of code defined in cells.\n"
             "--mode wall (default) counts waiting as such; cpu counts CPU time only.\n"
             "--threads samples every thread; --async shows asyncio tasks as their coroutine\n"
             "stacks. --collapsed writes flamegraph.pl's format, --speedscope speedscope's\n"
             "JSON; -l shows that many rows of the tree (default 30); -r returns a\n"
             "pyrometer.SampleProfile.\n"
             "--last shows the previous cell's profile under %autosample on, also after an\n"
             "interrupted cell.");

static PyObject *sample_magic(PyObject *module, PyObject *args)
{
    const char *line;
    PyObject *cell, *ns, *display;
    options_parsed o = OPTIONS_PARSED_INIT;
    PyObject *src = NULL, *code = NULL, *prof = NULL, *view = NULL, *result = NULL;
    PyObject *exc = NULL, *val = NULL, *tb = NULL;
    sampler_session *s = NULL;
    sampler_config cfg = {0.001, SAMPLER_WALL, 0};

    if (!PyArg_ParseTuple(args, "sOOO:sample", &line, &cell, &ns, &display))
        return NULL;
    if (!PyDict_Check(ns)) {
        PyErr_SetString(PyExc_TypeError, "%sample: the namespace must be a dict");
        return NULL;
    }
    if (cell != Py_None && !PyUnicode_Check(cell)) {
        PyErr_SetString(PyExc_TypeError, "%%sample: the cell must be a str or None");
        return NULL;
    }
    if (options_parse(module, &sample_magic_spec, line, &o) < 0)
        goto done;
    int async = options_given(&o, OPT_ASYNC);
    if (options_given(&o, OPT_LAST)) {
        if (!options_blank(o.rest) || cell != Py_None || options_given(&o, OPT_I) ||
            options_given(&o, OPT_MODE) || options_given(&o, OPT_THREADS)) {
            options_usage_error(module, &sample_magic_spec,
                                "--last shows the previous cell as it was sampled: no statement, "
                                "-i, --mode or --threads with it (set those on %%autosample)");
            goto done;
        }
        PyObject *last = previous_profile(module);
        if (last == NULL)
            goto done;
        view = apply_views(last, 1, async);
        if (view == NULL)
            goto done;
        result = report(module, view, &o, "%sample --last", display);
        goto done;
    }
    cfg.interval = options_double(&o, OPT_I, 0.001);
    cfg.all_threads = options_given(&o, OPT_THREADS);
    if (parse_mode(module, &sample_magic_spec, &o, OPT_MODE, &cfg.mode) < 0)
        goto done;
    src = options_statement(&o, cell);
    if (src == NULL)
        goto done;
    const char *csrc = PyUnicode_AsUTF8(src);
    if (csrc == NULL)
        goto done;
    if (options_blank(csrc)) {
        options_usage_error(module, &sample_magic_spec,
                            "nothing to sample; write the statement after the options, e.g. "
                            "%%sample -i 0.005 main()");
        goto done;
    }
    code = Py_CompileString(csrc, "<sample>", Py_file_input);
    if (code == NULL)
        goto done;
    if (register_source(src) < 0)
        goto done;
    s = sampler_new(&cfg);
    if (s == NULL)
        goto done;
    sampler_begin(s, 1);
    PyObject *r = PyEval_EvalCode(code, ns, ns);
    sampler_end(s);
    if (r == NULL)
        PyErr_Fetch(&exc, &val, &tb);
    Py_XDECREF(r);
    sampler_data *d = sampler_take_last(s);
    sampler_free(s);
    s = NULL;
    prof = d ? sampler_data_to_python(d) : NULL;
    sampler_data_free(d);
    if (prof == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "%sample: the recording was lost");
    view = prof ? apply_views(prof, 0, async) : NULL;
    result = view ? report(module, view, &o, "%sample", display) : NULL;
    if (exc != NULL) {
        if (result == NULL)
            PyErr_WriteUnraisable(module); /* the statement's own error wins */
        Py_CLEAR(result);
        PyErr_Restore(exc, val, tb);
        exc = val = tb = NULL;
    }
done:
    sampler_free(s);
    options_clear(&o);
    Py_XDECREF(src);
    Py_XDECREF(code);
    Py_XDECREF(prof);
    Py_XDECREF(view);
    Py_XDECREF(exc);
    Py_XDECREF(val);
    Py_XDECREF(tb);
    return result;
}

/* ---- cell hooks ------------------------------------------------------------------------------ */

PyDoc_STRVAR(pre_cell_doc, "_pre_cell(*info)\n--\n\n"
                           "Called before every cell: starts the autosample recording.");

static PyObject *pre_cell(PyObject *module, PyObject *args)
{
    if (auto_session != NULL) {
        Py_CLEAR(last_profile); /* "the previous cell" moves on */
        sampler_begin(auto_session, 0);
    }
    Py_RETURN_NONE;
}

/* Adds LAST_NOTE to a KeyboardInterrupt (once). Never raises. */
static void note_interrupt(PyObject *exc)
{
    if (exc == NULL || !PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt) ||
        !PyExceptionInstance_Check(exc))
        return;
    PyObject *notes = PyObject_GetAttrString(exc, "__notes__");
    if (notes == NULL)
        PyErr_Clear();
    else if (PySequence_Check(notes)) {
        PyObject *note = PyUnicode_FromString(LAST_NOTE);
        int has = note ? PySequence_Contains(notes, note) : -1;
        Py_XDECREF(note);
        Py_DECREF(notes);
        if (has != 0) {
            PyErr_Clear();
            return;
        }
    } else {
        Py_DECREF(notes);
    }
    PyObject *r = PyObject_CallMethod(exc, "add_note", "s", LAST_NOTE);
    if (r == NULL)
        PyErr_Clear();
    Py_XDECREF(r);
}

PyDoc_STRVAR(post_cell_doc,
             "_post_cell(exc=None)\n--\n\n"
             "Called after every cell with the exception it raised, if any: ends the autosample\n"
             "recording; a KeyboardInterrupt gets a note that %sample --last can show where\n"
             "the cell was.");

static PyObject *post_cell(PyObject *module, PyObject *args)
{
    PyObject *exc = NULL;
    if (!PyArg_ParseTuple(args, "|O:_post_cell", &exc))
        return NULL;
    if (auto_session != NULL) {
        sampler_end(auto_session);
        if (exc != NULL && PyExceptionInstance_Check(exc))
            note_interrupt(exc);
    }
    Py_RETURN_NONE;
}

/* post_run_cell(result): ends the recording. In the pyrometer kernel the
 * cell's error is formatted after this event, so its KeyboardInterrupt
 * (result.error_in_exec) gets the note here; IPython has shown it already
 * and gets it from ipython_interrupt. */
static PyObject *ipython_post(PyObject *module, PyObject *args)
{
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "|O:_ipython_post", &result))
        return NULL;
    if (auto_session != NULL) {
        sampler_end(auto_session);
        PyObject *exc = result ? PyObject_GetAttrString(result, "error_in_exec") : NULL;
        if (exc == NULL)
            PyErr_Clear();
        else if (PyExceptionInstance_Check(exc))
            note_interrupt(exc);
        Py_XDECREF(exc);
    }
    Py_RETURN_NONE;
}

/* IPython's custom exception handler for KeyboardInterrupt while
 * autosampling: the note, then IPython's own traceback. */
static PyObject *ipython_interrupt(PyObject *module, PyObject *args, PyObject *kwargs)
{
    PyObject *shell, *etype, *value, *tb, *tb_offset = Py_None;
    static char *kwlist[] = {"shell", "etype", "value", "tb", "tb_offset", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO|O", kwlist, &shell, &etype, &value, &tb,
                                     &tb_offset))
        return NULL;
    if (auto_session != NULL)
        sampler_end(auto_session);
    note_interrupt(value);
    PyObject *itb = PyObject_GetAttrString(shell, "InteractiveTB");
    if (itb == NULL)
        return NULL;
    PyObject *kw = Py_BuildValue("{s:O}", "tb_offset", tb_offset);
    PyObject *fn = PyObject_GetAttrString(itb, "structured_traceback");
    PyObject *a = Py_BuildValue("(OOO)", etype, value, tb);
    PyObject *stb = fn && a && kw ? PyObject_Call(fn, a, kw) : NULL;
    Py_DECREF(itb);
    Py_XDECREF(kw);
    Py_XDECREF(fn);
    Py_XDECREF(a);
    if (stb == NULL)
        return NULL;
    if (!PyList_Check(stb)) {
        Py_DECREF(stb);
        PyErr_SetString(PyExc_TypeError, "structured_traceback did not return a list");
        return NULL;
    }
    /* IPython before 8.11 leaves notes out: add ours as the last line. */
    int found = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(stb) && !found; i++) {
        const char *l = PyUnicode_Check(PyList_GET_ITEM(stb, i))
                            ? PyUnicode_AsUTF8(PyList_GET_ITEM(stb, i))
                            : NULL;
        found = l != NULL && strstr(l, LAST_NOTE) != NULL;
    }
    PyErr_Clear();
    PyObject *n = found ? NULL : PyUnicode_FromString(LAST_NOTE);
    if (!found && (n == NULL || PyList_Append(stb, n) < 0)) {
        Py_XDECREF(n);
        Py_DECREF(stb);
        return NULL;
    }
    Py_XDECREF(n);
    /* A custom handler shows the traceback itself, through the shell's
     * _showtraceback (ipykernel's makes the error reply from it). */
    PyObject *r = PyObject_CallMethod(shell, "_showtraceback", "OOO", etype, value, stb);
    Py_DECREF(stb);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* IPython checks a callback's signature against the event's: hence the
 * text signatures. */
static PyMethodDef ipython_defs[] = {
    {"_ipython_pre", pre_cell, METH_VARARGS,
     "_ipython_pre($module, info, /)\n--\n\nIPython's pre_run_cell: starts the recording."},
    {"_ipython_post", ipython_post, METH_VARARGS,
     "_ipython_post($module, result, /)\n--\n\nIPython's post_run_cell: ends the recording."},
    {"_ipython_interrupt", (PyCFunction)(void (*)(void))ipython_interrupt,
     METH_VARARGS | METH_KEYWORDS,
     "_ipython_interrupt($module, shell, etype, value, tb, tb_offset=None)\n--\n\n"
     "IPython's handler of KeyboardInterrupt while autosampling: the note, then the "
     "traceback."},
};

static int in_kernel(void)
{
    PyObject *modules = PySys_GetObject("modules"); /* borrowed */
    return modules != NULL && PyDict_GetItemString(modules, "_pyrometer_kernel") != NULL;
}

/* Registers (on) or unregisters the hooks on the cell events of the shell
 * that runs cells: the pyrometer kernel's (its events object, which it
 * shares with IPython once IPython is loaded) or IPython's. Outside both
 * (plain `import pyrometer`), nothing: the host calls _pre_cell and
 * _post_cell itself. Returns 0, or -1 with an exception set. */
static int ipython_hooks(PyObject *module, int on)
{
    PyObject *shell = NULL, *events = NULL, *pre = NULL, *post = NULL, *intr = NULL;
    int rc = -1;
    if (on) {
        PyObject *modules = PySys_GetObject("modules");
        PyObject *ip = modules ? PyDict_GetItemString(modules, "IPython") : NULL;
        PyObject *get = NULL;
        if (in_kernel()) {                      /* the kernel's get_ipython is a builtin */
            PyObject *b = PyEval_GetBuiltins(); /* borrowed */
            get = b ? PyDict_GetItemString(b, "get_ipython") : NULL;
            Py_XINCREF(get);
        } else if (ip != NULL) {
            get = PyObject_GetAttrString(ip, "get_ipython");
            if (get == NULL)
                return -1;
        }
        shell = get ? PyObject_CallNoArgs(get) : Py_NewRef(Py_None);
        Py_XDECREF(get);
        if (shell == NULL)
            return -1;
        if (shell == Py_None) {
            Py_DECREF(shell);
            return 0;
        }
    } else {
        if (ipython_shell == NULL)
            return 0;
        shell = Py_NewRef(ipython_shell);
    }
    events = PyObject_GetAttrString(shell, "events");
    pre = events ? PyCFunction_NewEx(&ipython_defs[0], module, NULL) : NULL;
    post = pre ? PyCFunction_NewEx(&ipython_defs[1], module, NULL) : NULL;
    intr = post ? PyCFunction_NewEx(&ipython_defs[2], module, NULL) : NULL;
    if (intr == NULL)
        goto done;
    if (on) {
        PyObject *r1 = PyObject_CallMethod(events, "register", "sO", "pre_run_cell", pre);
        PyObject *r2 =
            r1 ? PyObject_CallMethod(events, "register", "sO", "post_run_cell", post) : NULL;
        /* IPython shows an error before post_run_cell: the note comes from a
         * custom handler of KeyboardInterrupt (the kernel needs none). */
        PyObject *r3 = !r2           ? NULL
                       : in_kernel() ? Py_NewRef(Py_None)
                                     : PyObject_CallMethod(shell, "set_custom_exc", "(O)O",
                                                           PyExc_KeyboardInterrupt, intr);
        Py_XDECREF(r1);
        Py_XDECREF(r2);
        Py_XDECREF(r3);
        if (r3 == NULL)
            goto done;
        Py_XSETREF(ipython_shell, Py_NewRef(shell));
    } else {
        /* unregister compares by equality: builtin methods of one module
         * and one definition are equal */
        PyObject *r1 = PyObject_CallMethod(events, "unregister", "sO", "pre_run_cell", pre);
        if (r1 == NULL)
            PyErr_Clear();
        PyObject *r2 = PyObject_CallMethod(events, "unregister", "sO", "post_run_cell", post);
        if (r2 == NULL)
            PyErr_Clear();
        PyObject *r3 = in_kernel() ? Py_NewRef(Py_None)
                                   : PyObject_CallMethod(shell, "set_custom_exc", "()O", Py_None);
        Py_XDECREF(r1);
        Py_XDECREF(r2);
        Py_XDECREF(r3);
        Py_CLEAR(ipython_shell);
        if (r3 == NULL)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(shell);
    Py_XDECREF(events);
    Py_XDECREF(pre);
    Py_XDECREF(post);
    Py_XDECREF(intr);
    return rc;
}

/* ---- %autosample -------------------------------------------------------------------------------
 */

static int autosample_off(PyObject *module)
{
    int rc = ipython_hooks(module, 0);
    sampler_free(auto_session);
    auto_session = NULL;
    Py_CLEAR(last_profile);
    return rc;
}

PyDoc_STRVAR(autosample_doc,
             "autosample(line, cell, ns, display)\n--\n\n"
             "%autosample on|off [-i SECONDS] [--mode wall|cpu] [--threads]\n\n"
             "on: keep a sampler under every cell (a thread that sleeps between cells and\n"
             "reads frames while one runs); %sample --last then shows the previous cell's\n"
             "profile, also after an interrupt. off: stop it; nothing keeps running.\n"
             "Without on or off: says whether it is on.");

static PyObject *autosample_magic(PyObject *module, PyObject *args)
{
    const char *line;
    PyObject *cell, *ns, *display, *result = NULL;
    options_parsed o = OPTIONS_PARSED_INIT;
    sampler_config cfg = {0.001, SAMPLER_WALL, 0};

    if (!PyArg_ParseTuple(args, "sOOO:autosample", &line, &cell, &ns, &display))
        return NULL;
    if (options_parse(module, &autosample_magic_spec, line, &o) < 0)
        goto done;
    Py_ssize_t npos = PyList_GET_SIZE(o.positional);
    const char *word = npos == 1 ? PyUnicode_AsUTF8(PyList_GET_ITEM(o.positional, 0)) : NULL;
    if (npos > 1 || (npos == 1 && (word == NULL || (strcmp(word, "on") && strcmp(word, "off"))))) {
        options_usage_error(module, &autosample_magic_spec, "say on or off, e.g. %%autosample on");
        goto done;
    }
    if (npos == 0) {
        char msg[160];
        if (auto_session != NULL)
            snprintf(msg, sizeof msg, "autosample is on (every %g ms, %s%s)",
                     auto_config.interval * 1000.0,
                     auto_config.mode == SAMPLER_CPU ? "cpu" : "wall",
                     auto_config.all_threads ? ", all threads" : "");
        else
            snprintf(msg, sizeof msg, "autosample is off");
        result = PyUnicode_FromString(msg);
        goto done;
    }
    if (strcmp(word, "off") == 0) {
        if (autosample_off(module) < 0)
            goto done;
        result = Py_NewRef(Py_None);
        goto done;
    }
    cfg.interval = options_double(&o, AOPT_I, 0.001);
    cfg.all_threads = options_given(&o, AOPT_THREADS);
    if (parse_mode(module, &autosample_magic_spec, &o, AOPT_MODE, &cfg.mode) < 0)
        goto done;
    if (autosample_off(module) < 0)
        goto done;
    auto_session = sampler_new(&cfg);
    if (auto_session == NULL)
        goto done;
    auto_config = cfg;
    if (ipython_hooks(module, 1) < 0) {
        sampler_free(auto_session);
        auto_session = NULL;
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    options_clear(&o);
    return result;
}

/* ---- registration -----------------------------------------------------------------------------
 */

static PyMethodDef sample_defs[] = {
    {"sample", sample_magic, METH_VARARGS, sample_doc},
    {"autosample", autosample_magic, METH_VARARGS, autosample_doc},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef hook_defs[] = {
    {"_pre_cell", pre_cell, METH_VARARGS, pre_cell_doc},
    {"_post_cell", post_cell, METH_VARARGS, post_cell_doc},
    {NULL, NULL, 0, NULL},
};

int sampler_module_exec(PyObject *module)
{
    static const char *const kinds[] = {"line_cell", "line"};
    if (PyModule_AddFunctions(module, hook_defs) < 0 ||
        module_add_magic_help(module, "sample", &sample_magic_spec) < 0 ||
        module_add_magic_help(module, "autosample", &autosample_magic_spec) < 0)
        return -1;
    return module_add_magics(module, sample_defs, kinds);
}
