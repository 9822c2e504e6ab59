/*
 * The SQL lexer: decides whether a statement is certainly a read (so SR_AUTO
 * may send it to a replica) and rewrites portable '?' placeholders to $n.
 *
 * This is not a parser. It lexes just well enough to know where strings,
 * quoted identifiers, comments and dollar quotes begin and end, then looks at
 * the leading keywords and scans every remaining token for the few patterns
 * that make a read-looking statement a write. Every doubt answers "write":
 * a wrong "write" costs a trip to the primary, a wrong "read" sends a write
 * to a replica.
 *
 * sr__sql_is_read runs on every SR_AUTO statement, so it makes one linear
 * pass over the text and allocates nothing. The lexer only ever looks at
 * bytes up to the terminating NUL, and each lookahead is checked before the
 * next one is read, so truncated input cannot make it read out of bounds.
 */
#include "classify.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- the lexer ----------------------------------------------------------- */

typedef enum tok_kind {
    T_END,    /* end of input */
    T_BAD,    /* unterminated string, identifier, comment or dollar quote */
    T_WORD,   /* unquoted identifier or keyword */
    T_QIDENT, /* quoted identifier: "..", `..`, [..] */
    T_STRING, /* string literal or dollar-quoted body */
    T_NUMBER,
    T_PARAM,  /* $1 (PostgreSQL); $name, :name, @name, #name (SQLite) */
    T_PUNCT   /* any other single byte: ( ) ; , ? = ... */
} tok_kind;

typedef struct token {
    tok_kind kind;
    const char *s; /* first byte of the token (quotes included) */
    size_t n;
    bool uesc; /* PostgreSQL U&".." or U&'..': escapes may spell any name */
} token;

typedef struct lexer {
    const char *p;
    sr_sql_dialect d;
    /*
     * MySQL's sql_mode, which the lexer cannot see: NO_BACKSLASH_ESCAPES
     * makes a backslash an ordinary byte in strings, ANSI_QUOTES makes ".."
     * an identifier. A statement is lexed once per mode it could be run in.
     */
    bool no_backslash;
    bool ansi_quotes;
    /*
     * Lexed, but a server with a non-default setting could see different
     * token boundaries (PostgreSQL with standard_conforming_strings off) or
     * might skip or run text we cannot judge (MySQL executable comments).
     */
    bool uncertain;
} lexer;

static bool pg_like(sr_sql_dialect d) { return d != SR_SQL_MYSQL && d != SR_SQL_SQLITE; }

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bool is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

/* Bytes >= 0x80 are identifier bytes in every dialect (UTF-8 names). */
static bool is_ident_start(unsigned char c, sr_sql_dialect d)
{
    return is_alpha(c) || c == '_' || c >= 0x80 || (c == '$' && d == SR_SQL_MYSQL);
}

static bool is_ident_cont(unsigned char c) { return is_alpha(c) || is_digit(c) || c == '_' || c == '$' || c >= 0x80; }

static token make(tok_kind kind, const char *s, const char *e)
{
    token t = {kind, s, (size_t)(e - s), false};
    return t;
}

/* Unterminated: the rest of the input is swallowed so every later call is T_END. */
static token bad(lexer *lx, const char *s)
{
    const char *e = s + strlen(s);
    lx->p = e;
    return make(T_BAD, s, e);
}

/*
 * Skips whitespace and comments. False on an unterminated block comment.
 * Line comments end at \n, and for PostgreSQL also at \r, exactly as each
 * server ends them: ending one earlier than the server would expose text the
 * server treats as comment, and a quote in it could hide a later statement.
 */
static bool skip_trivia(lexer *lx)
{
    const char *p = lx->p;
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (is_space(c) && !(c == '\v' && lx->d == SR_SQL_SQLITE)) { /* \v: an illegal token to SQLite */
            p++;
        } else if (lx->d == SR_SQL_SQLITE && c == 0xef && (unsigned char)p[1] == 0xbb &&
                   (unsigned char)p[2] == 0xbf) {
            p += 3; /* SQLite reads a UTF-8 byte order mark as a space wherever a token starts */
        } else if (c == '-' && p[1] == '-' &&
                   /* MySQL needs "-- " + space or control char: "1--1" is 1 - -1 there */
                   (lx->d != SR_SQL_MYSQL || p[2] == '\0' || is_space((unsigned char)p[2]) ||
                    (unsigned char)p[2] < 0x20 || p[2] == 0x7f)) {
            while (*p && *p != '\n' && !(*p == '\r' && pg_like(lx->d)))
                p++;
        } else if (c == '#' && lx->d == SR_SQL_MYSQL) {
            while (*p && *p != '\n')
                p++;
        } else if (c == '/' && p[1] == '*') {
            /*
             * MySQL's executable comments, slash-star-bang and MariaDB's
             * slash-star-M-bang, run as code or not depending on the version
             * number inside: a statement holding one cannot be judged.
             */
            if (lx->d == SR_SQL_MYSQL && (p[2] == '!' || (p[2] == 'M' && p[3] == '!')))
                lx->uncertain = true;
            bool nests = pg_like(lx->d);
            int depth = 1;
            p += 2;
            while (depth > 0) {
                if (*p == '\0') {
                    lx->p = p;
                    return false;
                }
                if (p[0] == '*' && p[1] == '/') {
                    depth--;
                    p += 2;
                } else if (nests && p[0] == '/' && p[1] == '*') {
                    depth++;
                    p += 2;
                } else {
                    p++;
                }
            }
        } else {
            break;
        }
    }
    lx->p = p;
    return true;
}

/*
 * A quoted run starting at the opening quote `q`: the quote doubled stands
 * for itself; with `backslash`, \x escapes any byte.
 */
static token lex_quoted(lexer *lx, const char *start, const char *open, char q, bool backslash,
                        tok_kind kind)
{
    const char *p = open + 1;
    for (;;) {
        char c = *p;
        if (c == '\0')
            return bad(lx, start);
        if (backslash && c == '\\') {
            if (p[1] == '\0')
                return bad(lx, start);
            p += 2;
            continue;
        }
        if (c == q) {
            if (p[1] == q) {
                p += 2;
                continue;
            }
            p++;
            break;
        }
        /*
         * With standard_conforming_strings off PostgreSQL would read \' as an
         * escaped quote, and the string would end somewhere else.
         */
        if (c == '\\' && q == '\'' && p[1] == '\'' && pg_like(lx->d))
            lx->uncertain = true;
        p++;
    }
    lx->p = p;
    return make(kind, start, p);
}

/*
 * At a '$' in PostgreSQL: $1 is a parameter, $tag$ and $$ open a dollar
 * quote (tag: identifier bytes without '$', not starting with a digit),
 * anything else is the lone byte '$'.
 */
static token lex_dollar(lexer *lx, const char *s)
{
    if (is_digit((unsigned char)s[1])) {
        const char *p = s + 1;
        while (is_digit((unsigned char)*p))
            p++;
        lx->p = p;
        return make(T_PARAM, s, p);
    }
    const char *p = s + 1;
    if (*p != '$') {
        if (!is_ident_start((unsigned char)*p, lx->d)) {
            lx->p = s + 1;
            return make(T_PUNCT, s, s + 1);
        }
        while (*p && *p != '$' && is_ident_cont((unsigned char)*p))
            p++;
        if (*p != '$') {
            lx->p = s + 1;
            return make(T_PUNCT, s, s + 1);
        }
    }
    size_t taglen = (size_t)(p - s) + 1; /* "$tag$" */
    for (const char *b = p + 1; *b; b++) {
        /* strncmp stops at the input's NUL: never reads past it */
        if (*b == '$' && strncmp(b, s, taglen) == 0) {
            lx->p = b + taglen;
            return make(T_STRING, s, lx->p);
        }
    }
    return bad(lx, s);
}

/*
 * At ':', '$', '@' or '#' in SQLite, exactly as SQLite's tokenizer reads a
 * variable: name bytes, "::" pairs, and (after at least one name byte) a
 * TCL-style suffix "(...)" that runs to the first ')' with no regard for
 * quotes or comments, so ":a(')" is one token. A suffix cut by a space or
 * the end, or a sigil with no name, is an illegal token to SQLite: T_BAD.
 */
static token lex_sqlite_var(lexer *lx, const char *s)
{
    const char *p = s + 1;
    size_t n = 0;
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c != '\0' && is_ident_cont(c)) {
            n++;
            p++;
        } else if (c == '(' && n > 0) {
            p++;
            while (*p && !is_space((unsigned char)*p) && *p != ')')
                p++;
            if (*p != ')')
                return bad(lx, s);
            p++;
            break;
        } else if (c == ':' && p[1] == ':') {
            p += 2;
        } else {
            break;
        }
    }
    if (n == 0)
        return bad(lx, s);
    lx->p = p;
    return make(T_PARAM, s, p);
}

static token lex_next(lexer *lx)
{
    if (!skip_trivia(lx))
        return bad(lx, lx->p);
    const char *s = lx->p;
    unsigned char c = (unsigned char)*s;
    sr_sql_dialect d = lx->d;

    if (c == '\0')
        return make(T_END, s, s);
    if (c == '\'')
        return lex_quoted(lx, s, s, '\'', d == SR_SQL_MYSQL && !lx->no_backslash, T_STRING);
    if (c == '"')
        /* MySQL: a string unless ANSI_QUOTES; elsewhere an identifier */
        return d == SR_SQL_MYSQL && !lx->ansi_quotes ? lex_quoted(lx, s, s, '"', !lx->no_backslash, T_STRING)
                                                     : lex_quoted(lx, s, s, '"', false, T_QIDENT);
    if (c == '`' && (d == SR_SQL_MYSQL || d == SR_SQL_SQLITE))
        return lex_quoted(lx, s, s, '`', false, T_QIDENT);
    if (c == '[' && d == SR_SQL_SQLITE) {
        const char *e = strchr(s + 1, ']');
        if (!e)
            return bad(lx, s);
        lx->p = e + 1;
        return make(T_QIDENT, s, lx->p);
    }
    if (c == '$' && pg_like(d))
        return lex_dollar(lx, s);
    if (d == SR_SQL_SQLITE && (c == '$' || c == ':' || c == '@' || c == '#'))
        return lex_sqlite_var(lx, s);
    if (is_digit(c) || (c == '.' && is_digit((unsigned char)s[1]))) {
        /*
         * Digits, '.', and an exponent. Letters after it start a new word, so
         * "1for" yields the keyword FOR: splitting more finds more keywords.
         */
        const char *p = s;
        while (is_digit((unsigned char)*p) || *p == '.')
            p++;
        if ((*p == 'e' || *p == 'E') &&
            (is_digit((unsigned char)p[1]) ||
             ((p[1] == '+' || p[1] == '-') && is_digit((unsigned char)p[2])))) {
            p += 2;
            while (is_digit((unsigned char)*p))
                p++;
        }
        lx->p = p;
        return make(T_NUMBER, s, p);
    }
    if (is_ident_start(c, d)) {
        const char *p = s + 1;
        while (is_ident_cont((unsigned char)*p))
            p++;
        /* E'..': PostgreSQL's escape string, where \' does not end it */
        if (p == s + 1 && (c | 0x20) == 'e' && *p == '\'' && pg_like(d))
            return lex_quoted(lx, s, p, '\'', true, T_STRING);
        /* U&".." and U&'..': PostgreSQL's Unicode escapes, decoded later */
        if (p == s + 1 && (c | 0x20) == 'u' && p[0] == '&' && (p[1] == '"' || p[1] == '\'') && pg_like(d)) {
            token t = lex_quoted(lx, s, p + 1, p[1], false, p[1] == '"' ? T_QIDENT : T_STRING);
            t.uesc = t.kind != T_BAD;
            return t;
        }
        lx->p = p;
        return make(T_WORD, s, p);
    }
    lx->p = s + 1;
    return make(T_PUNCT, s, s + 1);
}

/* ---- read / write classification ---------------------------------------- */

static bool name_eq(const char *s, size_t n, const char *name)
{
    size_t i = 0;
    for (; i < n; i++) {
        unsigned char a = (unsigned char)s[i];
        if (name[i] == '\0' || (is_alpha(a) ? (a | 0x20) : a) != (unsigned char)name[i])
            return false;
    }
    return name[i] == '\0';
}

static bool name_has_prefix(const char *s, size_t n, const char *prefix)
{
    size_t len = strlen(prefix);
    return n >= len && name_eq(s, len, prefix);
}

/* `name` is lower case. */
static bool kw(const token *t, const char *name)
{
    return t->kind == T_WORD && name_eq(t->s, t->n, name);
}

static bool punct(const token *t, char c) { return t->kind == T_PUNCT && t->s[0] == c; }

/*
 * Functions whose call has a side effect, or whose result only means
 * something on the connection (and server) of an earlier statement, so a
 * SELECT calling them must go to the primary. Matched by name, unquoted or
 * quoted, schema-qualified or not, whenever the name is followed by '('.
 * Reading functions are left out on purpose (pg_sleep, sleep, now...).
 * User-defined functions can do anything and cannot be judged here: callers
 * that call writing functions from a SELECT must pass SR_WRITE.
 *
 *  PostgreSQL: sequences (nextval, setval, and currval/lastval, which are
 *    per-session), setseed (the session's random()), set_config, xid
 *    assignment (txid_current, pg_current_xact_id), pg_notify,
 *    pg_logical_emit_message, WAL, backup and server control
 *    (pg_switch_wal, pg_create_restore_point, pg_backup_start/stop and the
 *    old pg_start/stop_backup, pg_wal_replay_pause/resume, pg_reload_conf,
 *    pg_rotate_logfile*, pg_promote, pg_cancel_backend,
 *    pg_terminate_backend, pg_log_backend_memory_contexts,
 *    pg_log_standby_snapshot), pg_export_snapshot, replication slots,
 *    adminpack file writes, pg_import_system_collations, the large-object
 *    lo_* and loread/lowrite, functions that run a query given as text
 *    (query_to_xml*, cursor_to_xml*, ts_stat, ts_rewrite: the query may call
 *    any of these), and the prefixes pg_advisory_*, pg_try_advisory_*
 *    (locks), pg_stat_reset*, pg_stat_statements_reset, pg_logical_slot_*,
 *    pg_replication_origin_*, binary_upgrade_*, dblink* (runs SQL elsewhere).
 *  MySQL / MariaDB: GET_LOCK, RELEASE_LOCK, RELEASE_ALL_LOCKS, IS_FREE_LOCK,
 *    IS_USED_LOCK (user locks live on one server), and the per-connection
 *    LAST_INSERT_ID, ROW_COUNT, FOUND_ROWS (MariaDB's NEXTVAL/SETVAL/LASTVAL
 *    are in the PostgreSQL list; NEXT/PREVIOUS VALUE FOR is matched as a
 *    keyword sequence, and ":=" as an assignment to a user variable).
 *  SQLite: the per-connection last_insert_rowid, changes, total_changes,
 *    load_extension, fts3_tokenizer (registers a tokenizer), and the shell's
 *    writefile.
 */
static const char *const side_effect_fns[] = {
    "nextval", "setval", "currval", "lastval", "setseed", "set_config", "txid_current",
    "pg_current_xact_id", "pg_notify", "pg_logical_emit_message", "pg_switch_wal", "pg_switch_xlog",
    "pg_create_restore_point", "pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup",
    "pg_wal_replay_pause", "pg_wal_replay_resume", "pg_xlog_replay_pause", "pg_xlog_replay_resume",
    "pg_reload_conf", "pg_promote", "pg_cancel_backend", "pg_terminate_backend",
    "pg_log_backend_memory_contexts", "pg_log_standby_snapshot", "pg_export_snapshot",
    "pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
    "pg_drop_replication_slot", "pg_replication_slot_advance", "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot", "pg_sync_replication_slots", "pg_file_write", "pg_file_rename",
    "pg_file_unlink", "pg_file_sync", "pg_import_system_collations", "loread", "lowrite", "ts_stat",
    "ts_rewrite",
    "get_lock", "release_lock", "release_all_locks", "is_free_lock", "is_used_lock", "last_insert_id",
    "row_count", "found_rows",
    "last_insert_rowid", "changes", "total_changes", "load_extension", "fts3_tokenizer", "writefile",
};
static const char *const side_effect_prefixes[] = {
    "pg_advisory_", "pg_try_advisory_", "lo_", "pg_stat_reset", "pg_stat_statements_reset",
    "pg_rotate_logfile", "pg_logical_slot_", "pg_replication_origin_", "binary_upgrade_", "dblink",
    "query_to_xml", "cursor_to_xml",
};

static int hexval(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * The name a U&".." identifier spells with the default escape '\':
 * \XXXX and \+XXXXXX are code points, \\ a backslash, "" a quote. ASCII
 * code points are kept and any other becomes the byte 0x80, which matches
 * no name of the lists (all ASCII); at most `cap` bytes are kept, as
 * PostgreSQL truncates a name to NAMEDATALEN - 1. False when PostgreSQL
 * would reject the escape (then the name cannot be judged).
 */
static bool uident_decode(const token *t, char *buf, size_t cap, size_t *len)
{
    const char *p = t->s + 3, *e = t->s + t->n - 1; /* inside U&" and the closing quote */
    size_t w = 0;
    while (p < e) {
        unsigned long cp;
        if (*p == '\\' && p + 1 < e && p[1] == '\\') {
            cp = '\\';
            p += 2;
        } else if (*p == '\\') {
            int digits = p + 1 < e && p[1] == '+' ? 6 : 4;
            const char *h = p + 1 + (digits == 6);
            if (e - h < digits)
                return false;
            cp = 0;
            for (int i = 0; i < digits; i++) {
                int v = hexval((unsigned char)h[i]);
                if (v < 0)
                    return false;
                cp = cp * 16 + (unsigned long)v; /* at most 6 hex digits: no overflow */
            }
            if (cp == 0 || cp > 0x10ffff)
                return false;
            p = h + digits;
        } else {
            cp = (unsigned char)*p;
            p += *p == '"' ? 2 : 1; /* "" stands for one quote */
        }
        if (w < cap)
            buf[w++] = cp < 0x80 ? (char)cp : (char)0x80;
    }
    *len = w;
    return true;
}

static bool side_effect_fn(const token *t)
{
    const char *s = t->s;
    size_t n = t->n;
    char decoded[63];
    if (t->kind == T_QIDENT && t->uesc) {
        if (!uident_decode(t, decoded, sizeof decoded, &n))
            return true;
        s = decoded;
    } else if (t->kind == T_QIDENT) {
        s++;
        n -= 2; /* a T_QIDENT is terminated, so at least its two quotes */
    } else if (t->kind != T_WORD) {
        return false;
    }
    for (size_t i = 0; i < SR_ARRAY_LEN(side_effect_fns); i++)
        if (name_eq(s, n, side_effect_fns[i]))
            return true;
    for (size_t i = 0; i < SR_ARRAY_LEN(side_effect_prefixes); i++)
        if (name_has_prefix(s, n, side_effect_prefixes[i]))
            return true;
    return false;
}

/*
 * Words that never belong in a read, wherever they appear: a data-modifying
 * statement in a CTE or after EXPLAIN, SELECT ... INTO, FOR UPDATE. A column
 * that really is called "update" must be quoted, and then it is a T_QIDENT.
 */
static const char *const write_words[] = {"insert", "update", "delete", "merge", "into"};

typedef struct scan {
    lexer lx;
    token cur, prev, prev2;
    bool write; /* settled: a write pattern was seen */
    bool after_semi;
    int nest; /* WITH clauses open (bounded: the head is parsed by recursion) */
} scan;

/* Looks at the newest token in the light of the two before it. */
static void check(scan *s)
{
    const token *t = &s->cur;
    if (t->kind == T_END)
        return;
    if (t->kind == T_BAD || s->after_semi) { /* unterminated, or a second statement */
        s->write = true;
        return;
    }
    if (punct(t, ';')) {
        s->after_semi = true;
    } else if (t->kind == T_WORD) {
        for (size_t i = 0; i < SR_ARRAY_LEN(write_words); i++)
            if (kw(t, write_words[i]))
                s->write = true;
        /* FOR UPDATE / FOR SHARE / FOR NO KEY UPDATE / FOR KEY SHARE */
        if (kw(&s->prev, "for") && (kw(t, "share") || kw(t, "key") || kw(t, "no") || kw(t, "update")))
            s->write = true;
        /* LOCK IN SHARE MODE */
        if (kw(&s->prev, "lock") && kw(t, "in"))
            s->write = true;
        /* NEXT VALUE FOR seq (MariaDB, SQL standard), PREVIOUS VALUE FOR (per session) */
        if (kw(t, "for") && kw(&s->prev, "value") && (kw(&s->prev2, "next") || kw(&s->prev2, "previous")))
            s->write = true;
        /* U&".." UESCAPE 'c': any byte may be the escape, so the name is anyone's guess */
        if (kw(t, "uescape") && s->prev.uesc)
            s->write = true;
    } else if (punct(t, '(') && side_effect_fn(&s->prev)) {
        s->write = true;
    } else if (punct(t, '=') && punct(&s->prev, ':') && s->lx.d == SR_SQL_MYSQL) {
        s->write = true; /* SELECT @x := 1 assigns a user variable (PostgreSQL: a named argument) */
    }
}

static void advance(scan *s)
{
    s->prev2 = s->prev;
    s->prev = s->cur;
    s->cur = lex_next(&s->lx);
    check(s);
}

/*
 * At an open parenthesis, after `depth` of them were consumed: consumes up
 * to and including the matching close. False when the input ends first.
 */
static bool skip_group(scan *s, size_t depth)
{
    while (depth > 0) {
        advance(s);
        if (s->cur.kind == T_END || s->cur.kind == T_BAD)
            return false;
        if (punct(&s->cur, '('))
            depth++;
        else if (punct(&s->cur, ')'))
            depth--;
    }
    advance(s);
    return true;
}

static bool with_clause(scan *s);

/* A query: SELECT, VALUES, TABLE or WITH, after any number of '('. */
static bool query_head(scan *s)
{
    while (punct(&s->cur, '('))
        advance(s);
    if (kw(&s->cur, "select") || kw(&s->cur, "values") || kw(&s->cur, "table"))
        return true;
    if (kw(&s->cur, "with"))
        return with_clause(s);
    return false;
}

/*
 * WITH [RECURSIVE] name [(cols)] AS [[NOT] MATERIALIZED] (body)
 *   [SEARCH ... SET col] [CYCLE ... USING col] [, ...] main
 * Each body must start as a query, and so must the main statement. Anything
 * data-modifying deeper inside is caught by the word scan in check().
 */
static bool with_clause(scan *s)
{
    if (++s->nest > 64)
        return false; /* nested deeper than any real query: not judged */
    advance(s);
    if (kw(&s->cur, "recursive"))
        advance(s);
    for (;;) {
        if (s->cur.kind != T_WORD && s->cur.kind != T_QIDENT)
            return false;
        advance(s);
        if (punct(&s->cur, '(') && !skip_group(s, 1))
            return false;
        if (!kw(&s->cur, "as"))
            return false;
        advance(s);
        if (kw(&s->cur, "not"))
            advance(s);
        if (kw(&s->cur, "materialized"))
            advance(s);
        if (!punct(&s->cur, '('))
            return false;
        size_t depth = 0;
        while (punct(&s->cur, '(')) {
            depth++;
            advance(s);
        }
        if (!kw(&s->cur, "select") && !kw(&s->cur, "values") && !kw(&s->cur, "table") &&
            !kw(&s->cur, "with"))
            return false;
        if (!skip_group(s, depth))
            return false;
        while (kw(&s->cur, "search") || kw(&s->cur, "cycle")) {
            const char *end = kw(&s->cur, "search") ? "set" : "using";
            while (!kw(&s->cur, end)) {
                if (s->cur.kind == T_END || s->cur.kind == T_BAD)
                    return false;
                advance(s);
            }
            advance(s); /* the column it names */
            advance(s);
        }
        if (!punct(&s->cur, ','))
            break;
        advance(s);
    }
    return query_head(s);
}

/*
 * EXPLAIN / DESCRIBE / DESC: a read unless it runs the statement (ANALYZE
 * anywhere among the options, even "ANALYZE false"), and only when the
 * explained statement is itself a query; EXPLAIN of an INSERT is a write
 * here although it would not run it, which is merely conservative.
 */
static bool explain(scan *s)
{
    bool mysql = s->lx.d == SR_SQL_MYSQL;
    advance(s);
    /* PostgreSQL's option list; in MySQL a '(' here opens the query itself */
    if (!mysql && punct(&s->cur, '(')) {
        size_t depth = 1;
        while (depth > 0) {
            advance(s);
            if (s->cur.kind == T_END || s->cur.kind == T_BAD || kw(&s->cur, "analyze") ||
                kw(&s->cur, "analyse"))
                return false;
            if (punct(&s->cur, '('))
                depth++;
            else if (punct(&s->cur, ')'))
                depth--;
        }
        advance(s);
    }
    for (;;) {
        if (kw(&s->cur, "analyze") || kw(&s->cur, "analyse"))
            return false;
        if (kw(&s->cur, "verbose") || kw(&s->cur, "extended") || kw(&s->cur, "partitions") ||
            kw(&s->cur, "query") || kw(&s->cur, "plan")) {
            advance(s);
        } else if (kw(&s->cur, "format")) { /* MySQL: FORMAT = JSON */
            advance(s);
            if (punct(&s->cur, '='))
                advance(s);
            if (s->cur.kind == T_WORD)
                advance(s);
        } else {
            break;
        }
    }
    if (query_head(s))
        return true;
    /* MySQL: EXPLAIN tbl / DESCRIBE tbl [col] list the table's columns */
    return mysql && (s->cur.kind == T_WORD || s->cur.kind == T_QIDENT);
}

/* The statement's leading keywords. */
static bool read_head(scan *s)
{
    if (query_head(s))
        return true;
    if (kw(&s->cur, "show"))
        return true;
    if (kw(&s->cur, "explain"))
        return explain(s);
    if (s->lx.d == SR_SQL_MYSQL && (kw(&s->cur, "describe") || kw(&s->cur, "desc")))
        return explain(s);
    return false;
}

/* One reading of the statement: one dialect, and for MySQL one sql_mode. */
static bool is_read_as(const char *sql, sr_sql_dialect dialect, bool no_backslash, bool ansi_quotes)
{
    scan s;
    memset(&s, 0, sizeof s);
    s.lx.p = sql;
    s.lx.d = dialect;
    s.lx.no_backslash = no_backslash;
    s.lx.ansi_quotes = ansi_quotes;
    s.cur = lex_next(&s.lx);
    check(&s);
    if (s.cur.kind == T_END)
        return false; /* empty, or only comments */
    bool read = read_head(&s);
    while (read && !s.write && s.cur.kind != T_END)
        advance(&s);
    return read && !s.write && !s.lx.uncertain;
}

/*
 * MySQL and MariaDB: a read in every sql_mode the session might have. The
 * modes only differ on a backslash or a double quote, so a statement
 * without them is lexed once.
 *
 * With a multi-byte connection charset (gbk, big5, sjis, cp932, gb18030)
 * a byte >= 0x80 starts a character whose second byte may be a backslash or
 * a backtick, which then neither escapes nor closes anything: such a pair
 * is never judged. UTF-8 text pays for this only where a non-ASCII
 * character directly precedes a backslash or backtick, as in `café`.
 */
static bool mysql_is_read(const char *sql)
{
    bool backslash = false, dquote = false;
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        if (*p == '\\')
            backslash = true;
        else if (*p == '"')
            dquote = true;
        if (*p >= 0x80 && (p[1] == '\\' || p[1] == '`'))
            return false;
    }
    for (int mode = 0; mode < 4; mode++) {
        bool no_backslash = mode & 1, ansi_quotes = mode & 2;
        if ((no_backslash && !backslash) || (ansi_quotes && !dquote))
            continue;
        if (!is_read_as(sql, SR_SQL_MYSQL, no_backslash, ansi_quotes))
            return false;
    }
    return true;
}

bool sr__sql_is_read(const char *sql, sr_sql_dialect dialect)
{
    if (!sql)
        return false;
    switch (dialect) {
    case SR_SQL_POSTGRES:
        return is_read_as(sql, SR_SQL_POSTGRES, false, false);
    case SR_SQL_MYSQL:
        return mysql_is_read(sql);
    case SR_SQL_SQLITE:
        return is_read_as(sql, SR_SQL_SQLITE, false, false);
    case SR_SQL_GENERIC:
    default:
        /*
         * The server is unknown: a read only if every dialect reads it as
         * one, since the same bytes can be one statement to PostgreSQL and
         * two to SQLite (":a(')") or MySQL (backslashes).
         */
        return is_read_as(sql, SR_SQL_GENERIC, false, false) && mysql_is_read(sql) &&
               is_read_as(sql, SR_SQL_SQLITE, false, false);
    }
}

/* ---- placeholder rewriting ----------------------------------------------- */

/*
 * Which '?' is a placeholder. PostgreSQL has operators made with '?': the
 * jsonb ones ?| ?& and @?, and the geometric ?# ?-| (and ?- ?|| ?-|, which
 * cannot be told from "? - x" and "? || x"). Rule, for the PostgreSQL-like
 * dialects: a '?' directly preceded by '@', or directly followed by '&',
 * '#', "-|", or a single '|' (not "||", taken as concatenation), is left
 * alone as an operator; every other '?' outside literals, identifiers and
 * comments is a placeholder. For the jsonb '?' operator itself, write the
 * statement with native $n parameters: such statements are not rewritten.
 */
static bool is_placeholder(const char *sql, const token *t, sr_sql_dialect d)
{
    if (!punct(t, '?'))
        return false;
    if (!pg_like(d))
        return true;
    const char *p = t->s;
    if (p > sql && p[-1] == '@')
        return false;
    if (p[1] == '&' || p[1] == '#')
        return false;
    if (p[1] == '|' && p[2] != '|')
        return false;
    if (p[1] == '-' && p[2] == '|')
        return false;
    return true;
}

/*
 * A native numeric parameter: '$' and digits only (SQLite's "$1abc" is a
 * name). *v is its number, saturated at INT_MAX.
 */
static bool native_param(const token *t, int *v)
{
    if (t->kind != T_PARAM || t->s[0] != '$' || t->n < 2)
        return false;
    int64_t acc = 0;
    for (size_t i = 1; i < t->n; i++) {
        if (!is_digit((unsigned char)t->s[i]))
            return false;
        if (acc <= INT_MAX) /* so acc * 10 + 9 stays far below INT64_MAX */
            acc = acc * 10 + (t->s[i] - '0');
    }
    *v = acc > INT_MAX ? INT_MAX : (int)acc;
    return true;
}

static size_t ndigits(size_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/*
 * A space keeps $n a token of its own: "x?" must not become the identifier
 * "x$1", nor "?1" the parameter $11, nor "$?" the dollar quote "$$1".
 */
static bool pad_before(const char *sql, const token *t)
{
    return t->s > sql && is_ident_cont((unsigned char)t->s[-1]);
}

static bool pad_after(const token *t) { return is_ident_cont((unsigned char)t->s[1]); }

SR_API int sr_sql_rewrite_placeholders(const char *sql, sr_sql_dialect dialect, char **out,
                                       int *nplaceholders)
{
    if (out)
        *out = NULL;
    if (nplaceholders)
        *nplaceholders = 0;
    if (!sql || !out)
        return SR_EINVAL;

    /* Pass 1: count placeholders and the bytes they need; look for native $n. */
    lexer lx;
    memset(&lx, 0, sizeof lx);
    lx.p = sql;
    lx.d = dialect;
    size_t nq = 0, extra = 0;
    int native_max = 0;
    bool native = false;
    for (token t = lex_next(&lx); t.kind != T_END; t = lex_next(&lx)) {
        int v;
        if (is_placeholder(sql, &t, dialect)) {
            nq++;
            extra += ndigits(nq) + pad_before(sql, &t) + pad_after(&t); /* "$" replaces "?" */
        } else if (native_param(&t, &v)) {
            native = true;
            if (v > native_max)
                native_max = v;
        }
    }

    size_t len = strlen(sql);
    if (native || nq == 0) {
        /* already $n (or nothing to do): unchanged, counted by the highest $n */
        *out = malloc(len + 1);
        if (!*out)
            return SR_ENOMEM;
        memcpy(*out, sql, len + 1);
        if (nplaceholders)
            *nplaceholders = native_max;
        return SR_OK;
    }
    if (nq > INT_MAX)
        return SR_EINVAL;

    char *buf = malloc(len + extra + 1);
    if (!buf)
        return SR_ENOMEM;

    /* Pass 2: copy, replacing each placeholder. */
    lx.p = sql;
    char *w = buf;
    const char *copied = sql;
    size_t k = 0;
    for (token t = lex_next(&lx); t.kind != T_END; t = lex_next(&lx)) {
        if (!is_placeholder(sql, &t, dialect))
            continue;
        memcpy(w, copied, (size_t)(t.s - copied));
        w += t.s - copied;
        if (pad_before(sql, &t))
            *w++ = ' ';
        *w++ = '$';
        size_t nd = ndigits(++k);
        for (size_t v = k, i = nd; i > 0; i--, v /= 10)
            w[i - 1] = (char)('0' + v % 10);
        w += nd;
        if (pad_after(&t))
            *w++ = ' ';
        copied = t.s + 1;
    }
    size_t rest = len - (size_t)(copied - sql);
    memcpy(w, copied, rest + 1);

    *out = buf;
    if (nplaceholders)
        *nplaceholders = (int)nq;
    return SR_OK;
}
