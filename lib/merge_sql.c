/*
 * Deriving a merge plan from a statement's SQL (SR_MERGE_AUTO). Only the top
 * level of one SELECT is read: its select list (plain columns, aliases,
 * COUNT / SUM / MIN / MAX / AVG as whole items), DISTINCT, GROUP BY, ORDER BY
 * and LIMIT / OFFSET / FETCH. Parenthesised parts (subqueries, function
 * arguments) run on each shard as written and are skipped as units.
 *
 * The rule is "merge correctly or refuse": anything whose rows the merge
 * could combine wrongly (COUNT(DISTINCT ...), HAVING, window functions, an
 * aggregate inside an expression, ORDER BY or GROUP BY something not in the
 * select list, a LIMIT that is not a number, UNION, several statements) is
 * SR_EINVAL with the reason and what to do instead, never a guess.
 *
 * Rewrites of the SQL each shard gets: AVG(x) becomes SUM(x) (under AVG's
 * name) with COUNT(x) appended as a hidden column; LIMIT n OFFSET m becomes
 * LIMIT n+m when no group, aggregate or DISTINCT spans shards (otherwise
 * the shards send every row and the merge applies LIMIT / OFFSET).
 */
#include "merge_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum tok_kind {
    T_WORD,   /* unquoted identifier or keyword */
    T_QIDENT, /* quoted identifier */
    T_STRING,
    T_NUMBER,
    T_PARAM,  /* ?, $1, :name, @name */
    T_OPEN,   /* ( or [ */
    T_CLOSE,
    T_COMMA,
    T_SEMI,
    T_DOT,
    T_STAR,
    T_OP
} tok_kind;

typedef struct tok {
    tok_kind kind;
    int depth; /* nesting outside the token ((: the depth it opens from) */
    size_t at, len;
} tok;

typedef struct lexer {
    const char *sql;
    sr_sql_dialect d;
    tok *t;
    int n, cap;
} lexer;

#define WHY(...) (sr__fmt(why, whylen, __VA_ARGS__), SR_EINVAL)

static bool is_word_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool is_word_char(unsigned char c)
{
    return is_word_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static int push(lexer *lx, tok_kind k, int depth, size_t at, size_t len)
{
    if (lx->n == lx->cap) {
        int cap = lx->cap ? lx->cap * 2 : 64;
        tok *t = realloc(lx->t, (size_t)cap * sizeof *t);
        if (!t)
            return SR_ENOMEM;
        lx->t = t;
        lx->cap = cap;
    }
    lx->t[lx->n++] = (tok){k, depth, at, len};
    return SR_OK;
}

/* The end of a quoted run starting at s[i] (the quote), doubled quotes escaped; 0 if open. */
static size_t quoted_end(const char *s, size_t i, char q, bool backslash)
{
    for (size_t j = i + 1; s[j]; j++) {
        if (backslash && s[j] == '\\' && s[j + 1]) {
            j++;
            continue;
        }
        if (s[j] == q) {
            if (s[j + 1] == q) {
                j++;
                continue;
            }
            return j + 1;
        }
    }
    return 0;
}

static int lex(lexer *lx, char *why, size_t whylen)
{
    const char *s = lx->sql;
    sr_sql_dialect d = lx->d;
    bool my = d == SR_SQL_MYSQL, pg = d == SR_SQL_POSTGRES, lite = d == SR_SQL_SQLITE;
    int depth = 0;
    size_t i = 0;
    while (s[i]) {
        unsigned char c = (unsigned char)s[i];
        size_t start = i;
        if (c == ' ' || (c >= '\t' && c <= '\r')) {
            i++;
            continue;
        }
        if (c == '-' && s[i + 1] == '-' &&
            (!my || s[i + 2] == '\0' || s[i + 2] == ' ' || (s[i + 2] >= '\t' && s[i + 2] <= '\r'))) {
            while (s[i] && s[i] != '\n')
                i++;
            continue;
        }
        if (c == '#' && my) {
            while (s[i] && s[i] != '\n')
                i++;
            continue;
        }
        if (c == '/' && s[i + 1] == '*') {
            if (my && s[i + 2] == '!')
                return WHY("a MySQL executable comment (/*! ... */) cannot be read by the merge");
            int nest = 1;
            i += 2;
            while (s[i] && nest) {
                if (pg && s[i] == '/' && s[i + 1] == '*') {
                    nest++;
                    i += 2;
                } else if (s[i] == '*' && s[i + 1] == '/') {
                    nest--;
                    i += 2;
                } else {
                    i++;
                }
            }
            if (nest)
                return WHY("the SQL ends inside a comment");
            continue;
        }
        int rc;
        if (c == '\'' || (c == '"' && my)) {
            bool esc = my || (pg && i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e'));
            size_t e = quoted_end(s, i, (char)c, esc);
            if (!e)
                return WHY("the SQL ends inside a string");
            rc = push(lx, T_STRING, depth, start, e - start);
            i = e;
        } else if (c == '"' || (c == '`' && (my || lite || d == SR_SQL_GENERIC))) {
            size_t e = quoted_end(s, i, (char)c, false);
            if (!e)
                return WHY("the SQL ends inside a quoted identifier");
            rc = push(lx, T_QIDENT, depth, start, e - start);
            i = e;
        } else if (c == '[' && lite) {
            const char *e = strchr(s + i, ']');
            if (!e)
                return WHY("the SQL ends inside a [quoted] identifier");
            rc = push(lx, T_QIDENT, depth, start, (size_t)(e - s) + 1 - start);
            i = (size_t)(e - s) + 1;
        } else if (c == '$' && (pg || d == SR_SQL_GENERIC) &&
                   (s[i + 1] == '$' || is_word_start((unsigned char)s[i + 1]))) {
            /* $tag$ ... $tag$ */
            size_t j = i + 1;
            while (s[j] && s[j] != '$' && is_word_char((unsigned char)s[j]) && s[j] != '$')
                j++;
            if (s[j] != '$') {
                rc = push(lx, T_PARAM, depth, start, j - start);
                i = j;
            } else {
                size_t taglen = j + 1 - i;
                const char *e = s + j + 1;
                while ((e = strchr(e, '$')) && strncmp(e, s + i, taglen) != 0)
                    e++;
                if (!e)
                    return WHY("the SQL ends inside a dollar-quoted string");
                rc = push(lx, T_STRING, depth, start, (size_t)(e - s) + taglen - start);
                i = (size_t)(e - s) + taglen;
            }
        } else if (c == '?' || ((c == '$' || c == ':' || c == '@') && s[i + 1] &&
                                (is_word_char((unsigned char)s[i + 1])) && !(c == ':' && pg))) {
            i++;
            while (is_word_char((unsigned char)s[i]))
                i++;
            rc = push(lx, T_PARAM, depth, start, i - start);
        } else if ((c >= '0' && c <= '9') || (c == '.' && s[i + 1] >= '0' && s[i + 1] <= '9')) {
            while ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')
                i++;
            if ((s[i] == 'e' || s[i] == 'E') &&
                ((s[i + 1] >= '0' && s[i + 1] <= '9') ||
                 ((s[i + 1] == '+' || s[i + 1] == '-') && s[i + 2] >= '0' && s[i + 2] <= '9'))) {
                i += 2;
                while (s[i] >= '0' && s[i] <= '9')
                    i++;
            }
            rc = push(lx, T_NUMBER, depth, start, i - start);
        } else if (is_word_start(c)) {
            while (is_word_char((unsigned char)s[i]))
                i++;
            rc = push(lx, T_WORD, depth, start, i - start);
        } else if (c == '(' || (c == '[' && !lite)) {
            rc = push(lx, T_OPEN, depth++, start, 1);
            i++;
        } else if (c == ')' || (c == ']' && !lite)) {
            if (depth == 0)
                return WHY("unbalanced parentheses");
            rc = push(lx, T_CLOSE, --depth, start, 1);
            i++;
        } else if (c == ',') {
            rc = push(lx, T_COMMA, depth, start, 1);
            i++;
        } else if (c == ';') {
            rc = push(lx, T_SEMI, depth, start, 1);
            i++;
        } else if (c == '.') {
            rc = push(lx, T_DOT, depth, start, 1);
            i++;
        } else if (c == '*') {
            rc = push(lx, T_STAR, depth, start, 1);
            i++;
        } else {
            static const char ops[] = "+-/<>=~!@#%^&|`?:";
            i++;
            while (s[i] && strchr(ops, s[i]) && !(s[i] == '-' && s[i + 1] == '-') &&
                   !(s[i] == '/' && s[i + 1] == '*'))
                i++;
            rc = push(lx, T_OP, depth, start, i - start);
        }
        if (rc != SR_OK)
            return rc;
    }
    if (depth != 0)
        return WHY("unbalanced parentheses");
    return SR_OK;
}

/* ---- reading the token list ---- */

typedef struct parse {
    lexer *lx;
    const char *sql;
} parse;

static bool is_kw(const parse *ps, int i, const char *kw)
{
    const tok *t = &ps->lx->t[i];
    return i < ps->lx->n && t->kind == T_WORD && t->len == strlen(kw) &&
           strncasecmp(ps->sql + t->at, kw, t->len) == 0;
}

static bool top_kw(const parse *ps, int i, const char *kw)
{
    return i < ps->lx->n && ps->lx->t[i].depth == 0 && is_kw(ps, i, kw);
}

/* The index after the group that the T_OPEN at i opens. */
static int skip_group(const parse *ps, int i)
{
    int depth = ps->lx->t[i].depth;
    for (int j = i + 1; j < ps->lx->n; j++)
        if (ps->lx->t[j].kind == T_CLOSE && ps->lx->t[j].depth == depth)
            return j + 1;
    return ps->lx->n;
}

/* An identifier's text without its quotes (doubled quotes undone), into buf. */
static void ident_text(const parse *ps, const tok *t, char *buf, size_t len)
{
    const char *p = ps->sql + t->at;
    size_t n = t->len;
    if (t->kind == T_QIDENT && n >= 2) {
        char q = p[n - 1];
        size_t o = 0;
        for (size_t i = 1; i + 1 < n && o + 1 < len; i++) {
            buf[o++] = p[i];
            if (p[i] == q && p[i + 1] == q)
                i++;
        }
        buf[o] = '\0';
        return;
    }
    sr__fmt(buf, len, "%.*s", (int)n, p);
}

static bool ident_eq(const parse *ps, const tok *t, const char *name)
{
    char buf[256];
    ident_text(ps, t, buf, sizeof buf);
    /* Unquoted names fold case on every backend (PostgreSQL to lower, the others compare
     * column names case-insensitively). */
    return t->kind == T_WORD ? strcasecmp(buf, name) == 0 : strcmp(buf, name) == 0;
}

static bool same_text(const parse *ps, int a0, int a1, int b0, int b1)
{
    if (a1 - a0 != b1 - b0)
        return false;
    for (int k = 0; k < a1 - a0; k++) {
        const tok *x = &ps->lx->t[a0 + k], *y = &ps->lx->t[b0 + k];
        if (x->kind != y->kind || x->len != y->len ||
            (x->kind == T_WORD ? strncasecmp(ps->sql + x->at, ps->sql + y->at, x->len)
                               : memcmp(ps->sql + x->at, ps->sql + y->at, x->len)) != 0)
            return false;
    }
    return true;
}

typedef enum item_kind { ITEM_EXPR, ITEM_COLUMN, ITEM_STAR, ITEM_AGG } item_kind;

typedef struct item {
    item_kind kind;
    int agg;            /* ITEM_AGG: sr_agg or SR_AGG_AVG */
    int t0, t1;         /* tokens of the whole item */
    int e0, e1;         /* tokens of the expression (without the alias) */
    int a0, a1;         /* ITEM_AGG: tokens inside the parentheses */
    int alias;          /* token of the alias, or -1 */
    int name;           /* ITEM_COLUMN: token of the last name part */
} item;

static int agg_of(const parse *ps, int i)
{
    static const char *const names[] = {"count", "sum", "min", "max", "avg"};
    static const int aggs[] = {SR_AGG_COUNT, SR_AGG_SUM, SR_AGG_MIN, SR_AGG_MAX, SR_AGG_AVG};
    if (i + 1 >= ps->lx->n || ps->lx->t[i].kind != T_WORD || ps->lx->t[i + 1].kind != T_OPEN)
        return 0;
    for (size_t k = 0; k < SR_ARRAY_LEN(names); k++)
        if (is_kw(ps, i, names[k]))
            return aggs[k];
    return 0;
}

/* Words after which a last word is not an alias but part of the expression. */
static bool ends_expression(const parse *ps, int i)
{
    static const char *const kws[] = {"end", "null", "true", "false", "distinct", "all",
                                      "and", "or", "not", "is", "then", "else"};
    for (size_t k = 0; k < SR_ARRAY_LEN(kws); k++)
        if (is_kw(ps, i, kws[k]))
            return true;
    return false;
}

static int read_item(const parse *ps, int t0, int t1, item *it, char *why, size_t whylen)
{
    const tok *t = ps->lx->t;
    memset(it, 0, sizeof *it);
    it->t0 = t0;
    it->t1 = t1;
    it->e0 = t0;
    it->e1 = t1;
    it->alias = -1;
    it->name = -1;
    if (t1 - t0 >= 3 && is_kw(ps, t1 - 2, "as") &&
        (t[t1 - 1].kind == T_WORD || t[t1 - 1].kind == T_QIDENT || t[t1 - 1].kind == T_STRING)) {
        it->alias = t1 - 1;
        it->e1 = t1 - 2;
    } else if (t1 - t0 >= 2 && (t[t1 - 1].kind == T_QIDENT || t[t1 - 1].kind == T_WORD) &&
               !ends_expression(ps, t1 - 1) &&
               (t[t1 - 2].kind == T_WORD || t[t1 - 2].kind == T_QIDENT ||
                t[t1 - 2].kind == T_CLOSE || t[t1 - 2].kind == T_NUMBER ||
                t[t1 - 2].kind == T_STRING) &&
               !(t[t1 - 2].kind == T_WORD && (ends_expression(ps, t1 - 2) ||
                                              is_kw(ps, t1 - 2, "select")))) {
        it->alias = t1 - 1;
        it->e1 = t1 - 1;
    }
    int e0 = it->e0, e1 = it->e1;
    if (e1 <= e0)
        return WHY("an empty item in the select list");
    /* Window functions and aggregates inside expressions, outside subqueries. */
    int whole_agg = agg_of(ps, e0);
    if (whole_agg && skip_group(ps, e0 + 1) != e1)
        whole_agg = 0; /* something follows the call: FILTER, OVER, an operator */
    for (int i = e0; i < e1; i++) {
        if (t[i].kind == T_OPEN && i + 1 < e1 && (is_kw(ps, i + 1, "select") || is_kw(ps, i + 1, "with"))) {
            i = skip_group(ps, i) - 1;
            continue;
        }
        if (is_kw(ps, i, "over"))
            return WHY("a window function (OVER) in the select list: its value depends on "
                       "rows of other shards; run it per shard with sr_exec_shard, or "
                       "SR_MERGE_CONCAT and compute it in the application");
        if (is_kw(ps, i, "filter") && i > e0 && t[i - 1].kind == T_CLOSE)
            return WHY("an aggregate with FILTER is not merged; use an explicit sr_merge_spec "
                       "(SR_MERGE_SPEC) over per-shard partial aggregates");
        if (agg_of(ps, i) && !(whole_agg && i == e0))
            return WHY("an aggregate inside an expression (%.*s) cannot be combined across "
                       "shards; select the aggregate itself and compute the expression in the "
                       "application, or give an explicit sr_merge_spec (SR_MERGE_SPEC)",
                       (int)(t[e1 - 1].at + t[e1 - 1].len - t[e0].at), ps->sql + t[e0].at);
    }
    if (whole_agg) {
        it->kind = ITEM_AGG;
        it->agg = whole_agg;
        it->a0 = e0 + 2;
        it->a1 = e1 - 1;
        if (it->a0 < it->a1 && is_kw(ps, it->a0, "distinct"))
            return WHY("%.*s(DISTINCT ...) cannot be combined across shards (a value may be on "
                       "several shards); select the distinct values with SR_MERGE_AUTO's "
                       "DISTINCT or GROUP BY and aggregate them in the application",
                       (int)t[e0].len, ps->sql + t[e0].at);
        if (it->a0 < it->a1 && is_kw(ps, it->a0, "all"))
            it->a0++;
        if (it->a0 >= it->a1)
            return WHY("%.*s() without an argument", (int)t[e0].len, ps->sql + t[e0].at);
        for (int i = it->a0; i < it->a1; i++)
            if (it->agg == SR_AGG_AVG && t[i].kind == T_PARAM)
                return WHY("AVG over a parameter cannot be rewritten (it is sent as SUM and "
                           "COUNT, which would need the parameter twice)");
        return SR_OK;
    }
    /* A plain column: name [. name]... ; a star: [name .] * */
    if (t[e1 - 1].kind == T_STAR && (e1 - e0 == 1 || (e1 - e0 == 3 && t[e0 + 1].kind == T_DOT))) {
        it->kind = ITEM_STAR;
        return SR_OK;
    }
    bool plain = true;
    for (int i = e0; i < e1; i++) {
        bool name = t[i].kind == T_WORD || t[i].kind == T_QIDENT;
        if ((i - e0) % 2 == 0 ? !name : t[i].kind != T_DOT)
            plain = false;
    }
    if (plain && (e1 - e0) % 2 == 1) {
        it->kind = ITEM_COLUMN;
        it->name = e1 - 1;
    }
    return SR_OK;
}

/* The select item that an ORDER BY / GROUP BY expression names (tokens e0..e1), or -1. */
static int resolve(const parse *ps, const item *items, int nitems, int e0, int e1, int *index,
                   char *why, size_t whylen)
{
    const tok *t = ps->lx->t;
    *index = -1;
    if (e1 - e0 == 1 && t[e0].kind == T_NUMBER) {
        /* A position counts result columns (a * counts as its columns): with a * in the
         * list it is checked against the rows' width when they come. */
        bool star = false;
        for (int i = 0; i < nitems; i++)
            star |= items[i].kind == ITEM_STAR;
        long v = strtol(ps->sql + t[e0].at, NULL, 10);
        if (v < 1 || (!star && v > nitems) || v > 4096)
            return WHY("position %ld is not in the select list", v);
        *index = (int)v - 1;
        return SR_OK;
    }
    /* A name: an alias first, then a plain column by its last part (qualified: all parts). */
    bool single = e1 - e0 == 1 && (t[e0].kind == T_WORD || t[e0].kind == T_QIDENT);
    for (int i = 0; single && i < nitems; i++) {
        if (items[i].alias >= 0) {
            char a[256];
            ident_text(ps, &t[items[i].alias], a, sizeof a);
            if (ident_eq(ps, &t[e0], a)) {
                *index = i;
                break;
            }
        }
    }
    for (int i = 0; *index < 0 && i < nitems; i++) {
        if (items[i].kind == ITEM_COLUMN && items[i].alias < 0) {
            char n[256];
            ident_text(ps, &t[items[i].name], n, sizeof n);
            if ((single && ident_eq(ps, &t[e0], n)) ||
                same_text(ps, e0, e1, items[i].e0, items[i].e1))
                *index = i;
        } else if (same_text(ps, e0, e1, items[i].e0, items[i].e1)) {
            *index = i; /* the same expression, as written in the select list */
        }
    }
    for (int i = 0; *index >= 0 && i < *index; i++)
        if (items[i].kind == ITEM_STAR)
            return WHY("a column after a * in the select list: name the columns");
    return SR_OK;
}

/* A LIMIT / OFFSET count: a plain non-negative integer. */
static int count_at(const parse *ps, int i, int end, int64_t *out, char *why, size_t whylen)
{
    const tok *t = ps->lx->t;
    if (i >= end || t[i].kind != T_NUMBER)
        return WHY("LIMIT / OFFSET must be plain numbers for the merge to apply them (not a "
                   "parameter or an expression); give them in an sr_merge_spec instead");
    char buf[32];
    sr__fmt(buf, sizeof buf, "%.*s", (int)t[i].len, ps->sql + t[i].at);
    char *e;
    long long v = strtoll(buf, &e, 10);
    if (*e || v < 0 || t[i].len > 18)
        return WHY("LIMIT / OFFSET %s is not a plain integer", buf);
    *out = v;
    return SR_OK;
}

/* LIMIT / OFFSET / FETCH between tokens l0 and l1. */
static int read_limit(const parse *ps, sr_merge_plan *p, int l0, int l1, char *why, size_t whylen)
{
    int i = l0, rc;
    while (i < l1) {
        if (is_kw(ps, i, "limit")) {
            if (is_kw(ps, i + 1, "all")) {
                i += 2;
                continue;
            }
            int64_t a;
            if ((rc = count_at(ps, i + 1, l1, &a, why, whylen)) != SR_OK)
                return rc;
            i += 2;
            if (i < l1 && ps->lx->t[i].kind == T_COMMA) { /* LIMIT offset, count */
                int64_t b;
                if ((rc = count_at(ps, i + 1, l1, &b, why, whylen)) != SR_OK)
                    return rc;
                p->offset = a;
                p->limit = b;
                i += 2;
            } else {
                p->limit = a;
            }
        } else if (is_kw(ps, i, "offset")) {
            if ((rc = count_at(ps, i + 1, l1, &p->offset, why, whylen)) != SR_OK)
                return rc;
            i += 2;
            if (is_kw(ps, i, "row") || is_kw(ps, i, "rows"))
                i++;
        } else if (is_kw(ps, i, "fetch")) {
            i++;
            if (is_kw(ps, i, "first") || is_kw(ps, i, "next"))
                i++;
            int64_t n = 1;
            if (i < l1 && ps->lx->t[i].kind == T_NUMBER) {
                if ((rc = count_at(ps, i, l1, &n, why, whylen)) != SR_OK)
                    return rc;
                i++;
            }
            if (is_kw(ps, i, "row") || is_kw(ps, i, "rows"))
                i++;
            if (!is_kw(ps, i, "only"))
                return WHY("FETCH ... WITH TIES (or another FETCH form) is not merged");
            i++;
            p->limit = n;
        } else {
            return WHY("unexpected text in LIMIT / OFFSET: %.*s", (int)ps->lx->t[i].len,
                       ps->sql + ps->lx->t[i].at);
        }
    }
    return SR_OK;
}

/* ---- the SQL each shard runs ---- */

typedef struct edit {
    size_t from, to; /* bytes of the original replaced */
    char *text;      /* malloc'd */
} edit;

static int add_edit(edit *e, int *n, size_t from, size_t to, char *text)
{
    if (!text)
        return SR_ENOMEM;
    e[*n].from = from;
    e[*n].to = to;
    e[*n].text = text;
    (*n)++;
    return SR_OK;
}

static char *fmt_alloc(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static char *fmt_alloc(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* `text` as a quoted identifier of the dialect. */
static char *quote_ident(sr_sql_dialect d, const char *text, size_t len)
{
    char q = d == SR_SQL_MYSQL ? '`' : '"';
    char *s = malloc(2 * len + 3);
    if (!s)
        return NULL;
    size_t o = 0;
    s[o++] = q;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == q)
            s[o++] = q;
        s[o++] = text[i];
    }
    s[o++] = q;
    s[o] = '\0';
    return s;
}

static char *apply_edits(const char *sql, edit *e, int n)
{
    size_t len = strlen(sql), total = len + 1;
    for (int i = 0; i < n; i++)
        total += strlen(e[i].text);
    char *out = malloc(total);
    if (!out)
        return NULL;
    size_t o = 0, at = 0;
    for (int i = 0; i < n; i++) {
        memcpy(out + o, sql + at, e[i].from - at);
        o += e[i].from - at;
        size_t tl = strlen(e[i].text);
        memcpy(out + o, e[i].text, tl);
        o += tl;
        at = e[i].to;
    }
    memcpy(out + o, sql + at, len - at);
    o += len - at;
    out[o] = '\0';
    return out;
}

/* ---- the plan ---- */

static int derive(parse *ps, sr_merge_plan *p, char **shard_sql, char *why, size_t whylen)
{
    const tok *t = ps->lx->t;
    int n = ps->lx->n, i = 0;
    const char *sql = ps->sql;
    /* WITH name [(cols)] AS [NOT] [MATERIALIZED] (...) [, ...] before the SELECT. */
    if (top_kw(ps, 0, "with")) {
        i = 1;
        if (is_kw(ps, i, "recursive"))
            i++;
        for (;;) {
            if (i < n && (t[i].kind == T_WORD || t[i].kind == T_QIDENT))
                i++;
            if (i < n && t[i].kind == T_OPEN)
                i = skip_group(ps, i);
            if (!is_kw(ps, i, "as"))
                break;
            i++;
            if (is_kw(ps, i, "not"))
                i++;
            if (is_kw(ps, i, "materialized"))
                i++;
            if (i < n && t[i].kind == T_OPEN)
                i = skip_group(ps, i);
            if (i < n && t[i].kind == T_COMMA) {
                i++;
                continue;
            }
            break;
        }
    }
    if (!top_kw(ps, i, "select")) {
        /* Not a SELECT: rows as they come. A read that orders or limits its rows would be
         * merged wrongly as a concatenation. */
        for (int j = i; j < n; j++)
            if (t[j].depth == 0 && (is_kw(ps, j, "order") || is_kw(ps, j, "limit") ||
                                    is_kw(ps, j, "fetch")) &&
                (top_kw(ps, 0, "values") || top_kw(ps, 0, "table") || top_kw(ps, i, "values") ||
                 top_kw(ps, i, "table")))
                return WHY("a VALUES or TABLE statement with ORDER BY / LIMIT is not merged; "
                           "write it as a SELECT");
        *shard_sql = sr_strdup(sql);
        return *shard_sql ? SR_OK : SR_ENOMEM;
    }
    i++;
    if (top_kw(ps, i, "distinct")) {
        if (is_kw(ps, i + 1, "on"))
            return WHY("DISTINCT ON is not merged; use SR_MERGE_CONCAT and pick the rows in the "
                       "application");
        p->distinct = true;
        i++;
    } else if (top_kw(ps, i, "all")) {
        i++;
    }
    int sel0 = i;
    /* The top-level clauses after the select list. */
    int sel1 = n, group0 = -1, group1 = -1, order0 = -1, order1 = -1, lim0 = -1, lim1 = -1;
    int *open_end = NULL;
    for (int j = sel0; j < n; j++) {
        if (t[j].depth != 0)
            continue;
        if (t[j].kind == T_SEMI) {
            for (int k = j + 1; k < n; k++)
                if (t[k].kind != T_SEMI)
                    return WHY("several statements in one string; a scatter merges one SELECT");
            if (sel1 == n)
                sel1 = j;
            if (open_end)
                *open_end = j;
            open_end = NULL;
            break;
        }
        if (t[j].kind != T_WORD)
            continue;
        if (is_kw(ps, j, "union") || is_kw(ps, j, "intersect") || is_kw(ps, j, "except") ||
            is_kw(ps, j, "minus"))
            return WHY("UNION / INTERSECT / EXCEPT at the top level is not merged; run each part "
                       "as its own scatter, or wrap it: SELECT ... FROM (...) AS u");
        if (is_kw(ps, j, "into"))
            return WHY("SELECT ... INTO is not a read to merge");
        if (is_kw(ps, j, "having"))
            return WHY("HAVING filters groups that span shards: each shard would filter its "
                       "partial groups; give an explicit sr_merge_spec and filter in the "
                       "application, or drop HAVING and filter the merged groups");
        if (is_kw(ps, j, "window"))
            return WHY("a WINDOW clause (window functions) is not merged");
        bool from = is_kw(ps, j, "from") || is_kw(ps, j, "where");
        bool group = is_kw(ps, j, "group") && is_kw(ps, j + 1, "by");
        bool order = is_kw(ps, j, "order") && is_kw(ps, j + 1, "by");
        /* LIMIT / OFFSET / FETCH as clauses, not as column names (MySQL does not reserve
         * OFFSET): a count, a parameter or the clause's own words follow. */
        bool counted = j + 1 < n && (t[j + 1].kind == T_NUMBER || t[j + 1].kind == T_PARAM);
        bool limit = ((is_kw(ps, j, "limit") || is_kw(ps, j, "offset")) &&
                      (counted || is_kw(ps, j + 1, "all") || (j + 1 < n && t[j + 1].kind == T_OPEN))) ||
                     (is_kw(ps, j, "fetch") && (is_kw(ps, j + 1, "first") || is_kw(ps, j + 1, "next")));
        bool tail = is_kw(ps, j, "for") || (is_kw(ps, j, "lock") && is_kw(ps, j + 1, "in"));
        if (!from && !group && !order && !limit && !tail)
            continue;
        if (sel1 == n)
            sel1 = j;
        if (open_end && !(limit && open_end == &lim1)) {
            *open_end = j;
            open_end = NULL;
        }
        if (group) {
            group0 = j + 2;
            open_end = &group1;
            j++;
        } else if (order) {
            order0 = j + 2;
            open_end = &order1;
            j++;
        } else if (limit && lim0 < 0) {
            lim0 = j;
            open_end = &lim1;
        } else if (tail) {
            break;
        }
    }
    if (open_end)
        *open_end = n;
    if (lim0 >= 0 && lim1 < 0)
        lim1 = n;
    /* The select list. */
    item items[256];
    int nitems = 0;
    for (int a = sel0; a < sel1;) {
        int b = a;
        while (b < sel1 && !(t[b].kind == T_COMMA && t[b].depth == 0))
            b++;
        if (nitems == (int)SR_ARRAY_LEN(items))
            return WHY("more than %d items in the select list", (int)SR_ARRAY_LEN(items));
        int rc = read_item(ps, a, b, &items[nitems], why, whylen);
        if (rc != SR_OK)
            return rc;
        nitems++;
        a = b + 1;
    }
    if (nitems == 0)
        return WHY("an empty select list");
    bool star = false, aggs = false;
    for (int k = 0; k < nitems; k++) {
        star |= items[k].kind == ITEM_STAR;
        aggs |= items[k].kind == ITEM_AGG;
    }
    if (group0 >= 0 && group1 < 0)
        group1 = n;
    if (order0 >= 0 && order1 < 0)
        order1 = n;
    /* GROUP BY: select-list columns only. */
    bool key[256] = {false};
    int ngroup = 0, group_cols[256];
    if (group0 >= 0) {
        for (int a = group0; a < group1;) {
            int b = a;
            while (b < group1 && !(t[b].kind == T_COMMA && t[b].depth == 0))
                b++;
            for (int k = a; k < b; k++)
                if (is_kw(ps, k, "with") || is_kw(ps, k, "rollup") || is_kw(ps, k, "cube") ||
                    is_kw(ps, k, "grouping"))
                    return WHY("GROUP BY with ROLLUP / CUBE / GROUPING SETS is not merged");
            int idx;
            int rc = resolve(ps, items, nitems, a, b, &idx, why, whylen);
            if (rc != SR_OK)
                return rc;
            if (idx < 0 || idx >= nitems || items[idx].kind == ITEM_AGG)
                return WHY("GROUP BY %.*s: the merge groups by select-list columns only; add it "
                           "to the select list",
                           b > a ? (int)(t[b - 1].at + t[b - 1].len - t[a].at) : 0,
                           b > a ? sql + t[a].at : "");
            if (!key[idx] && ngroup < 256)
                group_cols[ngroup++] = idx;
            key[idx] = true;
            a = b + 1;
        }
    }
    bool grouped = aggs || ngroup > 0;
    if (grouped && star)
        return WHY("* together with aggregates or GROUP BY: name the columns");
    if (grouped && p->distinct && aggs)
        return WHY("DISTINCT together with aggregates is not merged");
    for (int k = 0; grouped && k < nitems; k++)
        if (items[k].kind != ITEM_AGG && !key[k])
            return WHY("select-list item %d is neither aggregated nor in GROUP BY, so its value "
                       "is not defined across shards",
                       k + 1);
    /* ORDER BY: select-list columns, with direction and NULLs. */
    if (order0 >= 0) {
        int cap = 0;
        for (int k = order0; k < order1; k++)
            cap += t[k].kind == T_COMMA && t[k].depth == 0;
        p->order = calloc((size_t)cap + 1, sizeof *p->order);
        if (!p->order)
            return SR_ENOMEM;
        for (int a = order0; a < order1;) {
            int b = a;
            while (b < order1 && !(t[b].kind == T_COMMA && t[b].depth == 0))
                b++;
            int e = b;
            merge_key *mk = &p->order[p->norder];
            int nulls = 0;
            if (e - 2 > a && is_kw(ps, e - 2, "nulls")) {
                if (is_kw(ps, e - 1, "first"))
                    nulls = SR_NULLS_FIRST;
                else if (is_kw(ps, e - 1, "last"))
                    nulls = SR_NULLS_LAST;
                else
                    return WHY("NULLS must be FIRST or LAST");
                e -= 2;
            }
            if (e - 1 > a && (is_kw(ps, e - 1, "asc") || is_kw(ps, e - 1, "desc"))) {
                mk->desc = is_kw(ps, e - 1, "desc");
                e--;
            }
            for (int k = a; k < e; k++)
                if (is_kw(ps, k, "collate"))
                    return WHY("ORDER BY ... COLLATE: the merge compares text byte by byte; "
                               "order by a column of a binary collation instead");
            if (e <= a)
                return WHY("an empty ORDER BY item");
            int idx;
            int rc = resolve(ps, items, nitems, a, e, &idx, why, whylen);
            if (rc != SR_OK)
                return rc;
            if (idx < 0)
                return WHY("ORDER BY %.*s: the merge orders by select-list columns only; add "
                           "it to the select list (and ignore it in the application), or use "
                           "its position or alias",
                           (int)(t[e - 1].at + t[e - 1].len - t[a].at), sql + t[a].at);
            mk->col = idx;
            mk->nulls_first = nulls ? nulls == SR_NULLS_FIRST
                                    : (p->dialect == SR_SQL_POSTGRES ||
                                       p->dialect == SR_SQL_GENERIC)
                                          ? mk->desc
                                          : !mk->desc;
            p->norder++;
            a = b + 1;
        }
    }
    if (lim0 >= 0) {
        int rc = read_limit(ps, p, lim0, lim1, why, whylen);
        if (rc != SR_OK)
            return rc;
    }
    p->kind = grouped || p->distinct ? MERGE_GROUP : p->norder ? MERGE_ORDER : MERGE_CONCAT;
    if (!star)
        p->ncols = nitems;
    if (grouped) {
        p->aggs = malloc((size_t)nitems * sizeof *p->aggs);
        p->avg_count = malloc((size_t)nitems * sizeof *p->avg_count);
        p->group = malloc((size_t)(ngroup ? ngroup : 1) * sizeof *p->group);
        if (!p->aggs || !p->avg_count || !p->group)
            return SR_ENOMEM;
        for (int k = 0; k < nitems; k++) {
            p->aggs[k] = items[k].kind == ITEM_AGG ? items[k].agg : SR_AGG_NONE;
            p->avg_count[k] = p->aggs[k] == SR_AGG_AVG ? nitems + p->nhidden++ : -1;
        }
        memcpy(p->group, group_cols, (size_t)ngroup * sizeof *p->group);
        p->ngroup = ngroup;
    }
    /* The shards' SQL. */
    edit edits[256 + 2];
    int nedits = 0, rc = SR_OK;
    char *hidden = NULL;
    size_t hidden_len = 0;
    for (int k = 0; rc == SR_OK && k < nitems; k++) {
        const item *it = &items[k];
        if (it->kind != ITEM_AGG || it->agg != SR_AGG_AVG)
            continue;
        size_t a0 = t[it->a0].at, a1 = t[it->a1 - 1].at + t[it->a1 - 1].len;
        size_t e0 = t[it->e0].at, e1 = t[it->e1 - 1].at + t[it->e1 - 1].len;
        /* SUM under the name the server gives the AVG item (its alias; PostgreSQL: "avg";
         * the others: the expression as written). */
        char *name;
        if (it->alias >= 0) {
            char a[256];
            ident_text(ps, &t[it->alias], a, sizeof a);
            name = quote_ident(p->dialect, a, strlen(a));
        } else if (p->dialect == SR_SQL_POSTGRES) {
            name = quote_ident(p->dialect, "avg", 3);
        } else {
            name = quote_ident(p->dialect, sql + e0, e1 - e0);
        }
        if (!name)
            return SR_ENOMEM;
        rc = add_edit(edits, &nedits, e0, t[it->t1 - 1].at + t[it->t1 - 1].len,
                      fmt_alloc("SUM(%.*s) AS %s", (int)(a1 - a0), sql + a0, name));
        free(name);
        char *more = rc == SR_OK ? fmt_alloc("%s, COUNT(%.*s) AS sr__count_%d", hidden ? hidden : "",
                                             (int)(a1 - a0), sql + a0, k)
                                 : NULL;
        free(hidden);
        hidden = more;
        if (rc == SR_OK && !hidden)
            rc = SR_ENOMEM;
        hidden_len = hidden ? strlen(hidden) : 0;
    }
    if (rc == SR_OK && hidden) {
        size_t at = t[sel1 - 1].at + t[sel1 - 1].len;
        rc = add_edit(edits, &nedits, at, at, hidden);
        hidden = NULL;
    }
    (void)hidden_len;
    if (rc == SR_OK && lim0 >= 0) {
        size_t from = t[lim0].at, to = t[lim1 - 1].at + t[lim1 - 1].len;
        if (p->kind != MERGE_GROUP && p->limit >= 0 && p->limit <= INT64_MAX - p->offset) {
            p->limit_pushed = true;
            rc = add_edit(edits, &nedits, from, to,
                          fmt_alloc("LIMIT %lld", (long long)(p->limit + p->offset)));
        } else {
            rc = add_edit(edits, &nedits, from, to, sr_strdup(""));
        }
    }
    if (rc == SR_OK) {
        *shard_sql = apply_edits(sql, edits, nedits);
        if (!*shard_sql)
            rc = SR_ENOMEM;
    }
    for (int k = 0; k < nedits; k++)
        free(edits[k].text);
    free(hidden);
    return rc;
}

int sr__merge_plan_from_sql(sr_merge_plan *p, const char *sql, char **shard_sql, char *why,
                            size_t whylen)
{
    lexer lx = {sql, p->dialect, NULL, 0, 0};
    int rc = lex(&lx, why, whylen);
    if (rc == SR_OK && lx.n == 0)
        rc = WHY("empty SQL");
    if (rc == SR_OK) {
        parse ps = {&lx, sql};
        rc = derive(&ps, p, shard_sql, why, whylen);
    }
    free(lx.t);
    return rc;
}
