/* test_transform.c - transform_cell: exact outputs for %magic, %%magic,
 * !shell, obj? and the lines that must be left alone (strings, brackets,
 * continuations, operators); errors; line counts; and that every output
 * compiles as Python (through the embedded interpreter). Then
 * transform_dedent and automagic (transform_cell_auto): exact outputs. */
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "transform.h"

typedef struct {
    const char *name;
    const char *in;
    const char *out;  /* expected source, or NULL when an error is expected */
    const char *err;  /* expected error, when out is NULL */
    const char *todo; /* a known bug (reported): the checks are TODO */
} transform_case;

#define P "__pyrometer__."

static const transform_case cases[] = {
    /* line magics */
    {"line magic", "%time x", P "line_magic('time', 'x')", NULL, NULL},
    {"line magic, no args", "%pwd", P "line_magic('pwd', '')", NULL, NULL},
    {"line magic, args with spaces kept", "%timeit -n 3 -r 1 f(a, b)",
     P "line_magic('timeit', '-n 3 -r 1 f(a, b)')", NULL, NULL},
    {"indented line magic in an if-block", "if True:\n    %lprun -f f f(1)\n",
     "if True:\n    " P "line_magic('lprun', '-f f f(1)')\n", NULL, NULL},
    {"tab-indented line magic", "for i in r:\n\t%time i\n",
     "for i in r:\n\t" P "line_magic('time', 'i')\n", NULL, NULL},
    {"magic among statements", "a = 1\n%time f(a)\nb = 2\n",
     "a = 1\n" P "line_magic('time', 'f(a)')\nb = 2\n", NULL, NULL},
    {"quotes and backslashes escaped", "%time print('it\\'s', \"\\n\")",
     P "line_magic('time', 'print(\\'it\\\\\\'s\\', \"\\\\n\")')", NULL, NULL},
    {"control characters escaped", "%time \x01\t\x7f", P "line_magic('time', '\\x01\\t\\x7f')",
     NULL, NULL},
    {"non-ASCII passed through", "%time caf\xc3\xa9()", P "line_magic('time', 'caf\xc3\xa9()')",
     NULL, NULL},

    /* assignments from magics and shell */
    {"x = %pwd", "x = %pwd", "x = " P "line_magic('pwd', '')", NULL, NULL},
    {"x=%pwd without spaces", "x=%pwd", "x = " P "line_magic('pwd', '')", NULL, NULL},
    {"x = %timeit -o f()", "x = %timeit -o f()", "x = " P "line_magic('timeit', '-o f()')", NULL,
     NULL},
    {"x = !ls", "x = !ls", "x = " P "getoutput('ls')", NULL, NULL},
    {"subscript target = !cmd", "d['k'] = !ls -l", "d['k'] = " P "getoutput('ls -l')", NULL, NULL},
    {"attribute target, indented", "if 1:\n    self.out = %pwd",
     "if 1:\n    self.out = " P "line_magic('pwd', '')", NULL, NULL},

    /* shell */
    {"!echo hi", "!echo hi", P "system('echo hi')", NULL, NULL},
    {"! echo hi (space after !)", "! echo hi", P "system('echo hi')", NULL, NULL},
    {"shell with quotes", "!echo 'a b' \"c\"", P "system('echo \\'a b\\' \"c\"')", NULL, NULL},
    {"indented shell", "if x:\n  !ls\n", "if x:\n  " P "system('ls')\n", NULL, NULL},

    /* cell magics */
    {"%%timeit -n1 with a body", "%%timeit -n1\nbody\nlines",
     P "cell_magic('timeit', '-n1', 'body\\nlines')\n", NULL, NULL},
    {"%%time, no args, empty body", "%%time\n", P "cell_magic('time', '', '')\n", NULL, NULL},
    {"%%time alone", "%%time", P "cell_magic('time', '', '')\n", NULL, NULL},
    {"cell magic args trimmed", "%%prun   -s cumulative  \nf()",
     P "cell_magic('prun', '-s cumulative', 'f()')\n", NULL, NULL},
    {"cell magic body left untransformed", "%%bash\n!ls\n%x\nobj?\n",
     P "cell_magic('bash', '', '!ls\\n%x\\nobj?\\n')\n", NULL, NULL},
    {"cell magic body escaped", "%%writefile f.txt\nit's\t\"q\"\\\n",
     P "cell_magic('writefile', 'f.txt', 'it\\'s\\t\"q\"\\\\\\n')\n", NULL, NULL},

    /* help */
    {"obj?", "obj?", P "inspect('obj', 0)", NULL, NULL},
    {"obj??", "obj??", P "inspect('obj', 1)", NULL, NULL},
    {"?obj", "?obj", P "inspect('obj', 0)", NULL, NULL},
    {"??obj", "??obj", P "inspect('obj', 1)", NULL, NULL},
    {"dotted obj?", "os.path.join?", P "inspect('os.path.join', 0)", NULL, NULL},
    {"obj? with trailing spaces", "obj?  ", P "inspect('obj', 0)", NULL, NULL},
    {"indented obj?", "if 1:\n    obj??", "if 1:\n    " P "inspect('obj', 1)", NULL, NULL},
    {"%magic?: the magic's help", "%lprun?", P "inspect('%lprun', 0)", NULL, NULL},
    {"%magic??", "%lprun??", P "inspect('%lprun', 1)", NULL, NULL},
    {"?%magic", "?%lprun", P "inspect('%lprun', 0)", NULL, NULL},
    {"?%%magic", "?%%mprof", P "inspect('%%mprof', 0)", NULL, NULL},
    {"%%magic? alone in a cell", "%%mprof?", P "inspect('%%mprof', 0)\n", NULL, NULL},
    {"%magic with ? inside its line is a call", "%timeit a?b", P "line_magic('timeit', 'a?b')",
     NULL, NULL},
    {"obj??? is not help", "obj???", "obj???", NULL, NULL},
    {"a?b is not help", "x?y", "x?y", NULL, NULL},
    {"1? is not help", "1?", "1?", NULL, NULL},

    /* left alone: strings */
    {"triple-quoted string holding magic-like lines",
     "s = \"\"\"\n%time x\n!ls\nobj?\n%%time\n\"\"\"\n",
     "s = \"\"\"\n%time x\n!ls\nobj?\n%%time\n\"\"\"\n", NULL, NULL},
    {"''' string, then a magic after it", "s = '''\n%a\n'''\n%time y",
     "s = '''\n%a\n'''\n" P "line_magic('time', 'y')", NULL, NULL},
    {"docstring holding magic-like lines",
     "def f():\n    \"\"\"doc\n    %not a magic\n    !nor this\n    \"\"\"\n    return 1\n%time "
     "f()",
     "def f():\n    \"\"\"doc\n    %not a magic\n    !nor this\n    \"\"\"\n    return 1\n" P
     "line_magic('time', 'f()')",
     NULL, NULL},
    {"escaped quote inside a triple-quoted string", "s = \"\"\"a\\\"\"\"\n%b\n\"\"\"",
     "s = \"\"\"a\\\"\"\"\n%b\n\"\"\"", NULL, NULL},
    {"string on one line does not open a block", "s = '%s' % x\n%time y",
     "s = '%s' % x\n" P "line_magic('time', 'y')", NULL, NULL},
    {"bracket inside a string does not count", "x = \"(\"\n!ls", "x = \"(\"\n" P "system('ls')",
     NULL, NULL},
    {"comment with a bracket and a quote", "# it's ( open\n%time x",
     "# it's ( open\n" P "line_magic('time', 'x')", NULL, NULL},

    /* left alone: brackets and continuations */
    {"line inside parentheses", "x = (1\n%2)", "x = (1\n%2)", NULL, NULL},
    {"line inside brackets", "x = [1,\n!ls]", "x = [1,\n!ls]", NULL, NULL},
    {"line inside braces", "d = {\n  'a': 1,\n%x\n}", "d = {\n  'a': 1,\n%x\n}", NULL, NULL},
    {"magic after brackets close", "x = (1,\n 2)\n%time y",
     "x = (1,\n 2)\n" P "line_magic('time', 'y')", NULL, NULL},
    {"backslash continuation", "x = 1 + \\\n%y", "x = 1 + \\\n%y", NULL, NULL},

    /* left alone: operators and other non-magics */
    {"x == %y", "x == %y", "x == %y", NULL, NULL},
    {"x != !y", "x != !y", "x != !y", NULL, NULL},
    {"a %= 3", "a %= 3", "a %= 3", NULL, NULL},
    {"x = 5 %3", "x = 5 %3", "x = 5 %3", NULL, NULL},
    {"x = y % z", "x = y % z", "x = y % z", NULL, NULL},
    {"x = a != b", "x = a != b", "x = a != b", NULL, NULL},
    {"print('%time')", "print('%time')", "print('%time')", NULL, NULL},
    {"plain code", "def f(x):\n    return x % 2\n", "def f(x):\n    return x % 2\n", NULL, NULL},

    /* empty cells */
    {"empty cell", "", "", NULL, NULL},
    {"newline only", "\n", "\n", NULL, NULL},

    /* errors */
    {"%% not on the first line", "x = 1\n%%time\ny", NULL,
     "cell magic %%time must be on the first line of the cell", NULL},
    {"%% without a name", "%%\nbody", NULL, "%% must be followed by a cell magic name", NULL},
    {"%% last line", "print(1)\n%%time", NULL,
     "cell magic %%time must be on the first line of the cell", NULL},

    /* bugs found by these tests, now fixed */
    {"continued line magic joins its continuation (as IPython does)", "%time x + \\\n  y",
     P "line_magic('time', 'x +    y')\n", NULL, NULL},
    {"backslash-continued '...' string", "s = 'abc\\\n%not'", "s = 'abc\\\n%not'", NULL, NULL},
    {"keyword argument = %x inside a call", "f(a = %b)", "f(a = %b)", NULL, NULL},
    {"blank line before %%time", "\n%%time\nx", "\n" P "cell_magic('time', '', 'x')\n", NULL, NULL},
    {"CRLF line ending after a line magic", "%time x\r\ny\r\n",
     P "line_magic('time', 'x')\r\ny\r\n", NULL, NULL},
};

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Compiles src as a module; returns 1 if Python accepts it. */
static int compiles(const char *src, char *why, size_t whylen)
{
    PyObject *code = Py_CompileString(src, "<cell>", Py_file_input);
    if (code != NULL) {
        Py_DECREF(code);
        return 1;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *s = value ? PyObject_Str(value) : NULL;
    snprintf(why, whylen, "%s", s && PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : "?");
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
    return 0;
}

/* Inputs that are not valid Python or IPython on purpose: no compile check. */
static int meant_invalid(const transform_case *c)
{
    static const char *const names[] = {"x == %y",
                                        "x != !y",
                                        "line inside parentheses",
                                        "line inside brackets",
                                        "line inside braces",
                                        "backslash continuation",
                                        "obj??? is not help",
                                        "a?b is not help",
                                        "1? is not help",
                                        "keyword argument = %x inside a call"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(c->name, names[i]) == 0)
            return 1;
    return 0;
}

/* Pasted indented code: input, expected output (NULL: left as it is). */
static const struct {
    const char *name, *in, *out;
} dedent_cases[] = {
    {"uniform 4 spaces", "    x = 1\n    y = 2\n", "x = 1\ny = 2\n"},
    {"nested block keeps its relative indent", "    if x:\n        y()\n    z()",
     "if x:\n    y()\nz()"},
    {"leading blank lines kept, first indented line decides", "\n  \n    a\n    b\n",
     "\n  \na\nb\n"},
    {"blank line shorter than the indent kept", "    a\n\n  \n    b", "a\n\n  \nb"},
    {"tabs", "\tfor i in r:\n\t\tprint(i)\n", "for i in r:\n\tprint(i)\n"},
    {"a line indented less is left as it is", "    a\n  b\n", "a\n  b\n"},
    {"indented magic", "    %time f()\n", "%time f()\n"},
    {"CRLF", "  a\r\n  b\r\n", "a\r\nb\r\n"},
    {"not indented: nothing to do", "a\n    b\n", NULL},
    {"blank cell: nothing to do", "   \n  ", NULL},
    {"empty cell", "", NULL},
};

/* The mock magic registry and namespace for automagic: pwd, cd, time and
 * who are magics; who is shadowed by a variable. */
static int mock_is_magic(const char *name, size_t len, void *arg)
{
    static const char *const magics[] = {"pwd", "cd", "time", "lprun"};
    (void)arg;
    for (size_t i = 0; i < sizeof magics / sizeof magics[0]; i++)
        if (strlen(magics[i]) == len && memcmp(magics[i], name, len) == 0)
            return 1;
    return 0;
}

static const struct {
    const char *name, *in, *out;
} automagic_cases[] = {
    {"bare name", "pwd", P "line_magic('pwd', '')"},
    {"trailing newline", "pwd\n", P "line_magic('pwd', '')\n"},
    {"with arguments", "cd /tmp", P "line_magic('cd', '/tmp')"},
    {"option arguments", "lprun -f f f(1)", P "line_magic('lprun', '-f f f(1)')"},
    {"cd -", "cd -", P "line_magic('cd', '-')"},
    {"cd ..", "cd ..", P "line_magic('cd', '..')"},
    {"statement as argument", "time x = 1", P "line_magic('time', 'x = 1')"},
    {"not a magic", "foo bar", "foo bar"},
    {"assignment", "cd = 3", "cd = 3"},
    {"assignment, no space", "cd=3", "cd=3"},
    {"augmented assignment", "cd += 1", "cd += 1"},
    {"comparison", "pwd == 'x'", "pwd == 'x'"},
    {"inequality", "pwd != 'x'", "pwd != 'x'"},
    {"tuple", "pwd, cd", "pwd, cd"},
    {"annotation", "pwd: str = 'x'", "pwd: str = 'x'"},
    {"call", "pwd()", "pwd()"},
    {"attribute", "time.sleep(1)", "time.sleep(1)"},
    {"subscript", "cd[0]", "cd[0]"},
    {"two lines: never", "pwd\ncd /tmp", "pwd\ncd /tmp"},
    {"explicit % unchanged", "%pwd", P "line_magic('pwd', '')"},
};

static void test_dedent_and_automagic(void)
{
    char err[256];
    for (size_t i = 0; i < sizeof dedent_cases / sizeof dedent_cases[0]; i++) {
        char *out = transform_dedent(dedent_cases[i].in);
        tap_is_str(out, dedent_cases[i].out, "dedent: %s", dedent_cases[i].name);
        if (out != NULL)
            tap_is_int(count_lines(out), count_lines(dedent_cases[i].in),
                       "dedent: %s: line count preserved", dedent_cases[i].name);
        free(out);
    }
    for (size_t i = 0; i < sizeof automagic_cases / sizeof automagic_cases[0]; i++) {
        char *out =
            transform_cell_auto(automagic_cases[i].in, mock_is_magic, NULL, err, sizeof err);
        tap_is_str(out, automagic_cases[i].out, "automagic: %s", automagic_cases[i].name);
        free(out);
    }
    char *out = transform_cell_auto("pwd", NULL, NULL, err, sizeof err);
    tap_is_str(out, "pwd", "automagic: no is_magic, no automagic");
    free(out);
}

int main(void)
{
    char err[256], why[512];
    int have_python;

    Py_InitializeEx(0);
    have_python = Py_IsInitialized();

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const transform_case *c = &cases[i];
        strcpy(err, "(no error)");
        char *out = transform_cell(c->in, err, sizeof err);
        if (c->todo != NULL) {
            /* Only the exact output is checked (and expected to fail):
             * an "ok # TODO" counts as a failure in meson. */
            tap_todo(c->todo);
            tap_is_str(out, c->out, "%s", c->name);
            tap_todo_end();
        } else if (c->out == NULL) {
            tap_ok(out == NULL, "%s: refused", c->name);
            tap_is_str(out == NULL ? err : NULL, c->err, "%s: reason", c->name);
        } else {
            if (!tap_is_str(out, c->out, "%s", c->name) && out == NULL)
                tap_diag("error: %s", err);
            /* Cell magics become one call; everything else keeps its lines,
             * so tracebacks point at the user's own lines. */
            if (strncmp(c->in, "%%", 2) != 0)
                tap_is_int(out ? count_lines(out) : -1, count_lines(c->in),
                           "%s: line count preserved", c->name);
            if (have_python && !meant_invalid(c) && out != NULL) {
                if (!tap_ok(compiles(out, why, sizeof why), "%s: output compiles", c->name))
                    tap_diag("%s", why);
            }
        }
        free(out);
    }

    /* Long cells: many lines, no quadratic surprise, every line rewritten. */
    {
        size_t n = 20000, len = 0;
        char *big = malloc(n * 9 + 1);
        for (size_t i = 0; i < n; i++)
            len += (size_t)sprintf(big + len, "%%time %zu\n", i % 10);
        char *out = transform_cell(big, err, sizeof err);
        tap_ok(out != NULL, "20000 magic lines: transformed");
        tap_is_int(out ? count_lines(out) : -1, (long long)n, "20000 magic lines: line count");
        tap_ok(out != NULL &&
                   strstr(out, P "line_magic('time', '9')\n" P "line_magic('time', '0')") != NULL,
               "20000 magic lines: each line rewritten");
        free(out);
        free(big);
    }

    test_dedent_and_automagic();

    if (have_python)
        Py_FinalizeEx();
    return tap_done_testing();
}
