/* transform.c - rewrites IPython-style cell syntax into plain Python calls
 * on `__pyrometer__`, line by line, tracking strings, brackets and
 * backslash continuations so that only whole logical lines are rewritten;
 * also the dedent of pasted indented code and automagic. */
#include "transform.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n > SIZE_MAX / 4 - b->len) { /* no size below can overflow (and GCC sees it) */
        b->failed = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Appends s[0:n] as a single-quoted Python string literal. */
static void put_literal(sbuf *b, const char *s, size_t n)
{
    put(b, "'", 1);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        char esc[8];
        switch (c) {
        case '\\':
            puts_(b, "\\\\");
            break;
        case '\'':
            puts_(b, "\\'");
            break;
        case '\n':
            puts_(b, "\\n");
            break;
        case '\r':
            puts_(b, "\\r");
            break;
        case '\t':
            puts_(b, "\\t");
            break;
        default:
            if ((unsigned char)c < 0x20 || c == 0x7f) {
                snprintf(esc, sizeof esc, "\\x%02x", (unsigned char)c);
                puts_(b, esc);
            } else {
                put(b, &c, 1);
            }
        }
    }
    put(b, "'", 1);
}

/* Lexer state carried from one line to the next. */
typedef struct {
    char quote;    /* open triple-quote char, or 0 */
    char squote;   /* open single-quoted string continued by a backslash, or 0 */
    int depth;     /* open brackets */
    int continued; /* previous line ended with a backslash */
} lexstate;

/* Advances st over one line (without its newline). */
/* Skips a single-quoted string body from s[i] (just after the opening quote
 * q) and returns the index after its closing quote; a string still open at a
 * backslash-newline sets st->squote instead and returns n. */
static size_t skip_short_string(lexstate *st, const char *s, size_t n, size_t i, char q)
{
    while (i < n && s[i] != q) {
        if (s[i] == '\\') {
            if (i + 1 == n) {
                st->squote = q;
                return n;
            }
            i++;
        }
        i++;
    }
    return i + 1;
}

static void scan_line(lexstate *st, const char *s, size_t n)
{
    size_t i = 0;
    st->continued = 0;
    if (st->squote) {
        char q = st->squote;
        st->squote = 0;
        i = skip_short_string(st, s, n, 0, q);
    }
    while (i < n) {
        char c = s[i];
        if (st->quote) {
            if (c == '\\') {
                i += 2;
                continue;
            }
            if (c == st->quote && i + 2 < n + 0 && s[i + 1] == c && s[i + 2] == c) {
                st->quote = 0;
                i += 3;
                continue;
            }
            i++;
            continue;
        }
        if (c == '#')
            return;
        if (c == '\\' && i + 1 == n) {
            st->continued = 1;
            return;
        }
        if (c == '\'' || c == '"') {
            if (i + 2 < n && s[i + 1] == c && s[i + 2] == c) {
                st->quote = c;
                i += 3;
                continue;
            }
            /* single-line string: skip to its end */
            i = skip_short_string(st, s, n, i + 1, c);
            continue;
        }
        if (c == '(' || c == '[' || c == '{')
            st->depth++;
        else if ((c == ')' || c == ']' || c == '}') && st->depth > 0)
            st->depth--;
        i++;
    }
}

static size_t span_ident(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_'))
        i++;
    return i;
}

/* If s is "target = %..." or "target = !...", returns the offset of the
 * '%' or '!' and sets *lhs_end; else 0. */
static size_t assignment_magic(const char *s, size_t n, size_t *lhs_end)
{
    size_t i = 0;
    while (i < n && (isalnum((unsigned char)s[i]) || strchr("_.,[]() *'\"", s[i]) != NULL)) {
        /* "name(" is a call, not an assignment target: f(a = %b) stays */
        if (s[i] == '(' && i > 0 && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '_'))
            return 0;
        i++;
    }
    if (i == 0 || i >= n || s[i] != '=' || (i + 1 < n && s[i + 1] == '='))
        return 0;
    size_t eq = i;
    i++;
    while (i < n && s[i] == ' ')
        i++;
    if (i < n && (s[i] == '%' || (s[i] == '!' && !(i + 1 < n && s[i + 1] == '=')))) {
        size_t e = eq;
        while (e > 0 && s[e - 1] == ' ')
            e--;
        *lhs_end = e;
        return i;
    }
    return 0;
}

/* Emits the call for "%name args" or "!cmd" at s[0:n] (s[0] is % or !). */
static void emit_call(sbuf *b, const char *s, size_t n, int assigned)
{
    if (s[0] == '!') {
        const char *cmd = s + 1;
        size_t cn = n - 1;
        while (cn > 0 && *cmd == ' ') {
            cmd++;
            cn--;
        }
        puts_(b, assigned ? "__pyrometer__.getoutput(" : "__pyrometer__.system(");
        put_literal(b, cmd, cn);
        puts_(b, ")");
        return;
    }
    size_t nl = span_ident(s + 1, n - 1);
    const char *args = s + 1 + nl;
    size_t an = n - 1 - nl;
    while (an > 0 && *args == ' ') {
        args++;
        an--;
    }
    puts_(b, "__pyrometer__.line_magic(");
    put_literal(b, s + 1, nl);
    puts_(b, ", ");
    put_literal(b, args, an);
    puts_(b, ")");
}

/* obj? / obj?? / ?obj / ??obj with obj a dotted name. Returns 1 and fills
 * name and level when s[0:n] is one. */
static int help_query(const char *s, size_t n, const char **name, size_t *nlen, int *level)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r'))
        n--;
    size_t q = 0;
    if (n > 1 && s[0] == '?') {
        while (q < n && s[q] == '?')
            q++;
        *name = s + q;
        *nlen = n - q;
    } else {
        while (q < n && s[n - 1 - q] == '?')
            q++;
        *name = s;
        *nlen = n - q;
    }
    if (q < 1 || q > 2 || *nlen == 0)
        return 0;
    for (size_t i = 0; i < *nlen; i++)
        if (!(isalnum((unsigned char)(*name)[i]) || (*name)[i] == '_' || (*name)[i] == '.' ||
              (unsigned char)(*name)[i] >= 0x80))
            return 0;
    if (isdigit((unsigned char)(*name)[0]))
        return 0;
    *level = (int)q - 1;
    return 1;
}

/* %name? / %name?? / ?%name / %%name? and the like: help on a magic.
 * Returns 1 and fills name (with its % or %%) and level when s[0:n] is
 * one. */
static int magic_help_query(const char *s, size_t n, const char **name, size_t *nlen, int *level)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r' || s[n - 1] == '\t'))
        n--;
    size_t q = 0;
    if (n > 0 && s[0] == '?') {
        while (q < n && s[q] == '?')
            q++;
        *name = s + q;
        *nlen = n - q;
    } else {
        while (q < n && s[n - 1 - q] == '?')
            q++;
        *name = s;
        *nlen = n - q;
    }
    if (q < 1 || q > 2 || *nlen < 2 || (*name)[0] != '%')
        return 0;
    size_t sig = (*name)[1] == '%' ? 2 : 1;
    if (*nlen <= sig || span_ident(*name + sig, *nlen - sig) != *nlen - sig)
        return 0;
    *level = (int)q - 1;
    return 1;
}

/* Emits __pyrometer__.inspect('%name', level). */
static void emit_help(sbuf *b, const char *name, size_t nlen, int level)
{
    puts_(b, "__pyrometer__.inspect(");
    put_literal(b, name, nlen);
    puts_(b, level ? ", 1)" : ", 0)");
}

char *transform_cell(const char *cell, char *err, size_t errlen)
{
    sbuf b = {0};
    lexstate st = {0};
    const char *p = cell;
    size_t total = strlen(cell);

    /* Leading blank lines are kept as they are (IPython drops them). */
    const char *first_line = cell;
    for (;;) {
        const char *q = first_line;
        while (*q == ' ' || *q == '\t' || *q == '\r')
            q++;
        if (*q != '\n')
            break;
        first_line = q + 1;
    }
    if (first_line != cell && first_line[0] == '%' && first_line[1] == '%') {
        char *rest = transform_cell(first_line, err, errlen);
        if (rest == NULL)
            return NULL;
        put(&b, cell, (size_t)(first_line - cell));
        puts_(&b, rest);
        free(rest);
        if (b.failed) {
            free(b.data);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        return b.data;
    }

    /* %%name args: the whole cell goes to a cell magic. */
    if (cell[0] == '%' && cell[1] == '%') {
        const char *eol = strchr(cell, '\n');
        size_t first = eol ? (size_t)(eol - cell) : total;
        const char *hname;
        size_t hlen;
        int hlevel;
        if (magic_help_query(cell, first, &hname, &hlen, &hlevel)) { /* %%name? */
            emit_help(&b, hname, hlen, hlevel);
            puts_(&b, "\n");
            if (b.failed) {
                free(b.data);
                snprintf(err, errlen, "out of memory");
                return NULL;
            }
            return b.data;
        }
        size_t nl = span_ident(cell + 2, first - 2);
        if (nl == 0) {
            snprintf(err, errlen, "%%%% must be followed by a cell magic name");
            return NULL;
        }
        const char *args = cell + 2 + nl;
        size_t an = first - 2 - nl;
        while (an > 0 && *args == ' ') {
            args++;
            an--;
        }
        while (an > 0 && (args[an - 1] == ' ' || args[an - 1] == '\r'))
            an--;
        const char *body = eol ? eol + 1 : cell + total;
        puts_(&b, "__pyrometer__.cell_magic(");
        put_literal(&b, cell + 2, nl);
        puts_(&b, ", ");
        put_literal(&b, args, an);
        puts_(&b, ", ");
        put_literal(&b, body, (size_t)(cell + total - body));
        puts_(&b, ")\n");
        if (b.failed) {
            free(b.data);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        return b.data;
    }

    while (*p || b.len == 0) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        int at_statement = !st.quote && !st.squote && st.depth == 0 && !st.continued;
        size_t ind = 0;
        while (ind < n && (p[ind] == ' ' || p[ind] == '\t'))
            ind++;
        const char *s = p + ind;
        size_t sn = n - ind;
        /* A CRLF line ending: the \r is kept but is not part of the magic. */
        int cr = sn > 0 && s[sn - 1] == '\r';
        if (cr)
            sn--;
        size_t lhs_end = 0, at;
        const char *hname;
        size_t hlen;
        int level;

        if (at_statement && sn > 0 && magic_help_query(s, sn, &hname, &hlen, &level)) {
            put(&b, p, ind);
            emit_help(&b, hname, hlen, level);
            if (cr)
                put(&b, "\r", 1);
        } else if (at_statement && sn > 0 && (s[0] == '%' || s[0] == '!')) {
            if (sn > 1 && s[0] == '%' && s[1] == '%') {
                free(b.data);
                snprintf(err, errlen, "cell magic %.*s must be on the first line of the cell",
                         (int)(sn > 40 ? 40 : sn), s);
                return NULL;
            }
            /* A trailing backslash continues the magic on the next lines,
             * joined with one space as IPython does; the consumed lines
             * stay as blank lines so line numbers hold. */
            size_t extra = 0;
            char *joined = NULL;
            if (sn > 0 && s[sn - 1] == '\\' && eol) {
                sbuf j = {0};
                const char *q = eol + 1;
                put(&j, s, sn - 1);
                for (;;) {
                    const char *qe = strchr(q, '\n');
                    size_t qn = qe ? (size_t)(qe - q) : strlen(q);
                    while (qn > 0 && (q[qn - 1] == ' ' || q[qn - 1] == '\r'))
                        qn--;
                    extra++;
                    put(&j, " ", 1);
                    int more = qn > 0 && q[qn - 1] == '\\' && qe;
                    put(&j, q, more ? qn - 1 : qn);
                    eol = qe;
                    if (!more)
                        break;
                    q = qe + 1;
                }
                if (j.failed) {
                    free(j.data);
                    free(b.data);
                    snprintf(err, errlen, "out of memory");
                    return NULL;
                }
                joined = j.data;
            }
            put(&b, p, ind);
            if (joined) {
                emit_call(&b, joined, strlen(joined), 0);
                free(joined);
                for (size_t k = 0; k < extra; k++)
                    put(&b, "\n", 1);
            } else {
                emit_call(&b, s, sn, 0);
                if (cr)
                    put(&b, "\r", 1);
            }
        } else if (at_statement && sn > 0 && (at = assignment_magic(s, sn, &lhs_end)) != 0) {
            put(&b, p, ind + lhs_end);
            puts_(&b, " = ");
            emit_call(&b, s + at, sn - at, 1);
            if (cr)
                put(&b, "\r", 1);
        } else if (at_statement && sn > 0 && help_query(s, sn, &hname, &hlen, &level)) {
            put(&b, p, ind);
            puts_(&b, "__pyrometer__.inspect(");
            put_literal(&b, hname, hlen);
            puts_(&b, level ? ", 1)" : ", 0)");
            if (cr)
                put(&b, "\r", 1);
        } else {
            put(&b, p, n);
            scan_line(&st, p, n);
        }
        if (!eol) {
            if (b.len == 0)
                put(&b, "", 0);
            break;
        }
        put(&b, "\n", 1);
        p = eol + 1;
    }
    if (b.failed || b.data == NULL) {
        free(b.data);
        if (b.failed) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        return strdup("");
    }
    return b.data;
}

/* Returns the length of the name that a one-line cell s runs as automagic
 * (s starts with it), or 0. */
static size_t automagic_name(const char *s, transform_magic_fn is_magic, void *arg)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 0 || memchr(s, '\n', n) != NULL || isdigit((unsigned char)s[0]))
        return 0;
    size_t nl = span_ident(s, n);
    if (nl == 0 || (nl < n && s[nl] != ' ' && s[nl] != '\t'))
        return 0;
    size_t r = nl;
    while (r < n && (s[r] == ' ' || s[r] == '\t'))
        r++;
    if (r < n) {
        /* name = ..., name += ..., name == ..., name, ..., name: int */
        size_t op = r;
        while (op < n && strchr("+-*/%&|^@<>!:", s[op]) != NULL && op - r < 3)
            op++;
        if (s[r] == ',' || s[r] == ':' || (op < n && s[op] == '='))
            return 0;
    }
    return is_magic(s, nl, arg) == 1 ? nl : 0;
}

char *transform_cell_auto(const char *cell, transform_magic_fn is_magic, void *arg, char *err,
                          size_t errlen)
{
    size_t nl = is_magic ? automagic_name(cell, is_magic, arg) : 0;
    if (nl == 0)
        return transform_cell(cell, err, errlen);
    size_t n = strlen(cell);
    char *line = malloc(n + 2);
    if (line == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    line[0] = '%';
    memcpy(line + 1, cell, n + 1);
    char *out = transform_cell(line, err, errlen);
    free(line);
    return out;
}

char *transform_dedent(const char *cell)
{
    const char *first = cell;
    for (;;) { /* the first line with something on it */
        const char *q = first;
        while (*q == ' ' || *q == '\t' || *q == '\r')
            q++;
        if (*q != '\n')
            break;
        first = q + 1;
    }
    size_t ind = 0;
    while (first[ind] == ' ' || first[ind] == '\t')
        ind++;
    if (ind == 0 || first[ind] == '\0')
        return NULL;
    char *out = malloc(strlen(cell) + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = cell; *p;) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) + 1 : strlen(p);
        size_t skip = n >= ind && memcmp(p, first, ind) == 0 ? ind : 0;
        memcpy(o, p + skip, n - skip);
        o += n - skip;
        p += n;
    }
    *o = '\0';
    return out;
}
