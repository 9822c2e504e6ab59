/*
 * The SQL lexer: read/write classification (every trap we know of: keywords
 * hidden in literals, comments and quoted names; literals hidden in other
 * dialects' syntax; statements that look like reads but write or lock) and
 * the '?' to $n rewrite.
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

#define G SR_SQL_GENERIC
#define P SR_SQL_POSTGRES
#define M SR_SQL_MYSQL
#define S SR_SQL_SQLITE

#define R true  /* certainly a read */
#define W false /* a write, or not certain */

typedef struct class_case {
    const char *name;
    sr_sql_dialect dialect;
    const char *sql;
    bool read;
} class_case;

static const class_case class_cases[] = {
    /* plain reads */
    {"select", P, "SELECT 1", R},
    {"select from", P, "SELECT a, b FROM t WHERE id = 1", R},
    {"lowercase", P, "select * from t", R},
    {"mixed case", P, "SeLeCt * FrOm t", R},
    {"values", P, "VALUES (1), (2)", R},
    {"table", P, "TABLE t", R},
    {"show pg", P, "SHOW work_mem", R},
    {"show mysql", M, "SHOW TABLES", R},
    {"describe mysql", M, "DESCRIBE t", R},
    {"desc mysql", M, "desc t", R},
    {"desc select mysql", M, "DESC SELECT * FROM t", R},
    {"describe is not pg", P, "DESCRIBE t", W},
    {"select generic", G, "SELECT 1 FROM t", R},
    {"select sqlite", S, "SELECT 1 FROM t", R},
    {"select mysql", M, "SELECT 1 FROM t", R},
    {"pg_sleep is a read", P, "SELECT pg_sleep(0.1)", R},
    {"count is a read", P, "SELECT count(*) FROM t", R},
    {"union", P, "SELECT 1 UNION ALL SELECT 2", R},
    {"unicode identifier", P, "SELECT \xc3\xa9t\xc3\xa9 FROM t", R},
    {"cast", P, "SELECT '1'::int, $1::text", R},
    {"for read only", P, "SELECT 1 FOR READ ONLY", R},

    /* leading trivia and parentheses */
    {"leading space", P, "  \n\t SELECT 1", R},
    {"leading line comment", P, "-- hello\nSELECT 1", R},
    {"leading block comment", P, "/* hi */ SELECT 1", R},
    {"leading paren", P, "(SELECT 1)", R},
    {"nested parens", P, "((SELECT 1)) UNION (SELECT 2)", R},
    {"paren values", P, "(VALUES (1))", R},
    {"paren with", P, "(WITH x AS (SELECT 1) SELECT * FROM x)", R},

    /* empty input */
    {"empty", P, "", W},
    {"whitespace only", P, " \n\t\r ", W},
    {"comment only", P, "-- nothing here", W},
    {"block comment only", P, "/* nothing */", W},
    {"semicolon only", P, ";", W},
    {"paren only", P, "(", W},

    /* keywords hidden in strings, identifiers, comments, dollar quotes */
    {"delete in string", P, "SELECT 'DELETE'", R},
    {"semicolon in string", P, "SELECT 'a; DELETE FROM t'", R},
    {"doubled quote", P, "SELECT 'it''s; DELETE FROM t'", R},
    {"keyword in comment, write after", P, "/* SELECT */ DELETE FROM t", W},
    {"write in trailing comment", P, "SELECT 1 /* ; DELETE FROM t */", R},
    {"write in line comment", P, "SELECT 1 -- ; DELETE FROM t", R},
    {"quoted update column", P, "SELECT \"update\" FROM t", R},
    {"quoted into column", P, "SELECT \"into\", \"for\" FROM t", R},
    {"doubled dquote", P, "SELECT \"a\"\"; DELETE\" FROM t", R},
    {"dollar quote", P, "SELECT $$ ; DROP TABLE x $$", R},
    {"tagged dollar quote", P, "SELECT $fn$ ; DELETE FROM t; $x$ $fn$", R},
    {"dollar param is not a quote", P, "SELECT $1, $2 FROM t; DELETE FROM t", W},
    {"dollar in identifier is not a quote", P, "SELECT a$$ FROM t; DELETE FROM t; SELECT $$", W},
    /* generic: a read only in every dialect; to SQLite "$$" is a variable, then a second statement */
    {"dollar quote in generic", G, "SELECT $$ ; DELETE $$", W},
    {"generic plain read", G, "SELECT a, 'x;y', \"z\" FROM t -- c", R},
    {"no dollar quotes in mysql", M, "SELECT $$ ; DELETE FROM t; $$", W},
    {"selected is not select", P, "SELECTED 1", W},
    {"keyword prefix column", P, "SELECT updated_at, deleted, into_x FROM t", R},
    {"mysql backtick", M, "SELECT `update`, `a;b` FROM t", R},
    {"sqlite backtick", S, "SELECT `delete` FROM t", R},
    {"sqlite brackets", S, "SELECT [update; delete] FROM t", R},
    {"brackets are not quotes in pg", P, "SELECT a[1] FROM t", R},
    {"sqlite bracket unterminated", S, "SELECT [abc FROM t", W},

    /* nested comments */
    {"pg nested comment", P, "/* a /* b */ DELETE FROM t; */ SELECT 1", R},
    {"pg nested comment hides nothing", P, "/* a /* b */ c */ DELETE FROM t", W},
    {"mysql comments do not nest", M, "/* a /* b */ DELETE FROM t", W},
    {"sqlite comments do not nest", S, "/* a /* b */ DELETE FROM t", W},
    {"mysql comment ends at first close", M, "/* a /* b */ SELECT 1", R},
    {"sqlite comment ends at first close", S, "/* a /* b */ SELECT 1", R},
    {"pg comment nests past first close", P, "/* a /* b */ SELECT 1", W},
    {"pg unterminated nested comment", P, "SELECT 1 /* a /* b */", W},

    /* backslashes */
    /* a read with backslash escapes, two statements with NO_BACKSLASH_ESCAPES */
    {"mysql backslash quote", M, "SELECT 'it\\'s; DELETE'", W},
    {"mysql backslash dquote string", M, "SELECT \"a\\\"; DELETE FROM t\"", W},
    {"mysql escaped backslash", M, "SELECT 'a\\\\'; DELETE FROM t", W},
    {"pg standard string backslash", P, "SELECT 'C:\\temp' FROM t", R},
    {"pg backslash before quote is uncertain", P, "SELECT 'x\\' , 'y; DELETE FROM t; --'", W},
    {"sqlite backslash is literal", S, "SELECT 'x\\'; DELETE FROM t", W},
    {"pg E string", P, "SELECT E'it\\'s; DELETE FROM t'", R},
    {"pg lowercase e string", P, "SELECT e'\\''", R},
    {"pg E string escaped backslash", P, "SELECT E'a\\\\'; DELETE FROM t", W},
    {"identifier ending in e is not E string", P, "SELECT fe'x\\'; DELETE FROM t", W},

    /* comments per dialect */
    {"mysql hash comment", M, "SELECT 1 # ; DELETE FROM t", R},
    {"hash is not a comment in pg", P, "SELECT 1 # 2; DELETE FROM t", W},
    {"mysql double dash needs space", M, "SELECT 1--1; DELETE FROM t", W},
    {"mysql double dash with space", M, "SELECT 1 -- ; DELETE FROM t", R},
    {"pg double dash always", P, "SELECT 1--; DELETE FROM t", R},
    {"mysql line comment ends at LF only", M, "SELECT 1 -- x\r' \n; DELETE FROM t; -- '", W},
    {"pg line comment ends at CR", P, "SELECT 1 -- x\rFOR UPDATE", W},
    {"mysql executable comment", M, "SELECT 1 /*!99999 ' */ ; DELETE FROM t; -- ' */", W},
    {"mariadb executable comment", M, "SELECT /*M!100100 SQL_NO_CACHE */ 1", W},
    {"mysql optimizer hint", M, "SELECT /*+ MAX_EXECUTION_TIME(10) */ 1", R},

    /* multiple statements */
    {"trailing semicolon", P, "SELECT 1;", R},
    {"trailing semicolon and comment", P, "SELECT 1; -- done\n", R},
    {"trailing semicolon and block comment", P, "SELECT 1 ; /* done */  ", R},
    {"two reads", P, "SELECT 1; SELECT 2", W},
    {"read then write", P, "SELECT 1; DELETE FROM t", W},
    {"double semicolon", P, "SELECT 1;;", W},

    /* CTEs */
    {"with", P, "WITH x AS (SELECT 1) SELECT * FROM x", R},
    {"with recursive", P,
     "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", R},
    {"with two ctes", P, "WITH a AS (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b", R},
    {"with materialized", P, "WITH a AS MATERIALIZED (SELECT 1), b AS NOT MATERIALIZED (SELECT 2) TABLE a", R},
    {"with quoted name", P, "WITH \"a b\" AS ((SELECT 1)) SELECT 1", R},
    {"with search cycle", P,
     "WITH RECURSIVE r(id) AS (SELECT 1) SEARCH DEPTH FIRST BY id SET ord CYCLE id, x SET c USING p, "
     "q AS (VALUES (1)) SELECT * FROM r",
     R},
    {"with delete returning", P, "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", W},
    {"with insert", P, "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM x", W},
    {"with update second", P, "WITH a AS (SELECT 1), b AS (UPDATE t SET x = 1 RETURNING x) SELECT 1", W},
    {"with main insert", P, "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", W},
    {"with main delete", P, "WITH x AS (SELECT 1) DELETE FROM t", W},
    {"with main update mysql", M, "WITH x AS (SELECT 1) UPDATE t SET a = 1", W},
    {"with unterminated", P, "WITH x AS (SELECT 1", W},
    {"with nonsense", P, "WITH x SELECT 1", W},
    {"with merge", P, "WITH x AS (SELECT 1) MERGE INTO t USING x ON true WHEN MATCHED THEN DELETE", W},

    /* locking reads */
    {"for update", P, "SELECT * FROM t WHERE id = 1 FOR UPDATE", W},
    {"for share", P, "SELECT * FROM t FOR SHARE", W},
    {"for no key update", P, "SELECT * FROM t FOR NO KEY UPDATE", W},
    {"for key share", P, "select * from t for key share", W},
    {"for update in subquery", P, "SELECT * FROM (SELECT * FROM t FOR UPDATE) s", W},
    {"for update in cte", P, "WITH x AS (SELECT * FROM t FOR UPDATE SKIP LOCKED) SELECT * FROM x", W},
    {"for share across comment", P, "SELECT * FROM t FOR /* x */ SHARE", W},
    {"lock in share mode", M, "SELECT * FROM t LOCK IN SHARE MODE", W},
    {"mysql for update nowait", M, "SELECT * FROM t FOR UPDATE NOWAIT", W},
    {"number glued to for update", P, "SELECT * FROM t WHERE id=1for update", W},

    /* SELECT INTO */
    {"select into table", P, "SELECT * INTO new_t FROM t", W},
    {"select into mysql var", M, "SELECT a INTO @v FROM t", W},
    {"select into outfile", M, "SELECT a FROM t INTO OUTFILE '/tmp/x'", W},

    /* EXPLAIN */
    {"explain", P, "EXPLAIN SELECT 1", R},
    {"explain verbose", P, "EXPLAIN VERBOSE SELECT 1", R},
    {"explain options", P, "EXPLAIN (FORMAT JSON, COSTS OFF) SELECT 1", R},
    {"explain analyze", P, "EXPLAIN ANALYZE SELECT 1", W},
    {"explain analyse", P, "explain analyse select 1", W},
    {"explain verbose analyze", P, "EXPLAIN VERBOSE ANALYZE SELECT 1", W},
    {"explain (analyze)", P, "EXPLAIN (ANALYZE) SELECT 1", W},
    {"explain (format json, analyze true)", P, "EXPLAIN (FORMAT JSON, ANALYZE true) SELECT 1", W},
    {"explain (analyze false) conservative", P, "EXPLAIN (ANALYZE false) SELECT 1", W},
    {"explain insert", P, "EXPLAIN INSERT INTO t VALUES (1)", W},
    {"explain analyze delete", P, "EXPLAIN ANALYZE DELETE FROM t", W},
    {"mysql explain analyze", M, "EXPLAIN ANALYZE SELECT * FROM t", W},
    {"mysql describe analyze", M, "DESCRIBE ANALYZE SELECT * FROM t", W},
    {"mysql explain format", M, "EXPLAIN FORMAT=JSON SELECT * FROM t", R},
    {"mysql explain table", M, "EXPLAIN t", R},
    {"sqlite explain query plan", S, "EXPLAIN QUERY PLAN SELECT * FROM t", R},
    {"explain with cte", P, "EXPLAIN WITH x AS (SELECT 1) SELECT * FROM x", R},

    /* side-effecting functions */
    {"nextval", P, "SELECT nextval('s')", W},
    {"qualified nextval", P, "SELECT pg_catalog.nextval('s')", W},
    {"quoted nextval", P, "SELECT \"nextval\"('s')", W},
    {"nextval across comment", P, "SELECT NEXTVAL /* x */ ('s')", W},
    {"setval", P, "SELECT setval('s', 10)", W},
    {"currval", P, "SELECT currval('s')", W},
    {"nextval in values", P, "VALUES (nextval('s'))", W},
    {"advisory lock", P, "SELECT pg_advisory_lock(1)", W},
    {"try advisory xact lock", P, "SELECT pg_try_advisory_xact_lock(1)", W},
    {"set_config", P, "SELECT set_config('a.b', 'c', false)", W},
    {"large object", P, "SELECT lo_import('/tmp/x')", W},
    {"txid_current", P, "SELECT txid_current()", W},
    {"pg_notify", P, "SELECT pg_notify('c', 'x')", W},
    {"nextval as column is fine", P, "SELECT nextval FROM t", R},
    {"nextval in string is fine", P, "SELECT 'nextval(1)'", R},
    {"get_lock", M, "SELECT GET_LOCK('x', 10)", W},
    {"release_lock", M, "SELECT RELEASE_LOCK('x')", W},
    {"last_insert_id", M, "SELECT LAST_INSERT_ID()", W},
    {"mariadb next value for", M, "SELECT NEXT VALUE FOR s", W},
    {"sqlite last_insert_rowid", S, "SELECT last_insert_rowid()", W},
    {"sqlite changes", S, "SELECT changes()", W},

    /* statements that write */
    {"insert", P, "INSERT INTO t VALUES (1)", W},
    {"update", P, "UPDATE t SET a = 1", W},
    {"delete", P, "DELETE FROM t", W},
    {"merge", P, "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", W},
    {"create", P, "CREATE TABLE t (a int)", W},
    {"create table as select", P, "CREATE TABLE t AS SELECT 1", W},
    {"drop", P, "DROP TABLE t", W},
    {"alter", P, "ALTER TABLE t ADD COLUMN b int", W},
    {"truncate", P, "TRUNCATE t", W},
    {"begin", P, "BEGIN", W},
    {"commit", P, "COMMIT", W},
    {"set", P, "SET search_path = x", W},
    {"call", P, "CALL p()", W},
    {"do", P, "DO $$ BEGIN PERFORM 1; END $$", W},
    {"copy", P, "COPY t FROM STDIN", W},
    {"lock", P, "LOCK TABLE t", W},
    {"grant", P, "GRANT SELECT ON t TO u", W},
    {"vacuum", P, "VACUUM t", W},
    {"mysql replace", M, "REPLACE INTO t VALUES (1)", W},
    {"sqlite pragma", S, "PRAGMA journal_mode = wal", W},
    {"insert select", P, "INSERT INTO t SELECT * FROM s", W},
    {"leading comment then insert", P, "-- SELECT\nINSERT INTO t VALUES (1)", W},
    {"paren then delete", P, "(DELETE FROM t)", W},

    /* unterminated literals */
    {"unterminated string", P, "SELECT 'abc", W},
    {"unterminated dquote", P, "SELECT \"abc", W},
    {"unterminated dollar quote", P, "SELECT $$abc", W},
    {"unterminated tagged dollar quote", P, "SELECT $a$abc$a", W},
    {"unterminated comment", P, "SELECT 1 /* abc", W},
    {"unterminated E string", P, "SELECT E'abc\\'", W},
    {"mysql trailing backslash", M, "SELECT 'abc\\", W},
    {"mysql unterminated backtick", M, "SELECT `abc", W},

    /*
     * SQLite variables: ':', '$', '@' and '#' followed by name bytes, "::"
     * pairs, and a TCL-style "(...)" suffix that runs to the first ')' or
     * space and swallows quotes (audit #9, item 2).
     */
    {"sqlite :a( swallows a quote", S, "SELECT :a(');DELETE FROM t;--'", W},
    {"sqlite $a( swallows a quote", S, "SELECT $a(');DELETE FROM t;--'", W},
    {"sqlite @a( swallows a quote", S, "SELECT @a(');DELETE FROM t;--'", W},
    {"sqlite #a( swallows a quote", S, "SELECT #a(');DELETE FROM t;--'", W},
    {"sqlite $a::b( swallows a quote", S, "SELECT $a::b(');DELETE FROM t;--'", W},
    {"sqlite variable swallows a dquote", S, "SELECT :a(\"x) FROM t; DELETE FROM t; --\"", W},
    {"sqlite variable swallows a comment", S, "SELECT :a(/*x) FROM t; DELETE FROM t; --*/", W},
    {"sqlite variables are reads", S, "SELECT * FROM t WHERE a = :a AND b = @b AND c = $c AND d = #d", R},
    {"sqlite tcl variable is a read", S, "SELECT $a(b), $x::y::z(1) FROM t", R},
    {"sqlite variable suffix ends at space", S, "SELECT $a(b c) FROM t", W},
    {"sqlite lone sigil", S, "SELECT : a FROM t", W},
    {"sqlite variable ending the input", S, "SELECT :a", R},
    {"sqlite byte order mark is space", S, "\xef\xbb\xbfSELECT 1", R},
    /* the same bytes in the other dialects: there the quote opens a string */
    {"pg :a( is a string", P, "SELECT :a(');DELETE FROM t;--'", R},
    {"mysql @a( is a string", M, "SELECT @a(');DELETE FROM t;--'", R},
    {"mysql #a( is a comment", M, "SELECT 1 #a(');DELETE FROM t;--'", R},
    {"generic :a( is a write", G, "SELECT :a(');DELETE FROM t;--'", W},
    {"generic $a( is a write", G, "SELECT $a(');DELETE FROM t;--'", W},

    /*
     * MySQL sql_mode: with NO_BACKSLASH_ESCAPES a backslash is literal, with
     * ANSI_QUOTES "..." is an identifier; the lexer cannot know the mode, so a
     * statement is a read only if it is one in every mode (audit #9, item 3).
     */
    {"mysql no_backslash_escapes for update", M, "SELECT 'a\\' , id FROM t FOR UPDATE -- '", W},
    {"mysql no_backslash_escapes second statement", M, "SELECT 'a\\'; DELETE FROM t; -- '", W},
    {"mysql ansi_quotes for update", M, "SELECT \"a\\\" , id FROM t FOR UPDATE -- \"", W},
    {"mysql ansi_quotes function name", M, "SELECT \"get_lock\"('x', 10)", W},
    {"mysql backslash before other byte", M, "SELECT 'a\\nb', \"c\\td\" FROM t", R},
    {"mysql dquote string without backslash", M, "SELECT \"a\", \"b\"\"c\" FROM t", R},
    /* gbk/big5/sjis: a byte >= 0x80 and the backslash or backtick after it are one character */
    {"mysql multi-byte backslash is not judged", M, "SELECT '\xbf\\n' FROM t", W},
    {"mysql multi-byte backtick", M, "SELECT a\xbf` , id FROM t FOR UPDATE -- `", W},
    {"mysql utf-8 text is a read", M, "SELECT '\xc3\xa9t\xc3\xa9', `\xc3\xa9t` FROM t", R},
    /* the price: a name ending in a non-ASCII character before its backtick is not judged */
    {"mysql utf-8 before backtick", M, "SELECT `\xc3\xa9` FROM t", W},
    {"generic mysql backslash", G, "SELECT 'a\\' , id FROM t FOR UPDATE -- '", W},

    /* PostgreSQL U&"..." identifiers spell names with escapes (audit #9) */
    {"pg U& nextval", P, "SELECT U&\"\\006Eextval\"('s')", W},
    {"pg u& six-digit escape", P, "SELECT u&\"\\+00006Eextval\"('s')", W},
    {"pg U& plain nextval", P, "SELECT U&\"nextval\"('s')", W},
    {"pg U& advisory prefix", P, "SELECT U&\"pg_advisory\\005Flock\"(1)", W},
    {"pg U& uescape", P, "SELECT U&\"!006Eextval\" UESCAPE '!' ('s')", W},
    {"pg U& qualified", P, "SELECT pg_catalog.U&\"\\006Eextval\"('s')", W},
    {"pg U& bad escape", P, "SELECT U&\"\\zz\"('s')", W},
    {"pg U& column is a read", P, "SELECT U&\"d\\0061t\\+000061\" FROM t", R},
    {"pg U& harmless function", P, "SELECT U&\"\\0063oalesce\"(a, b) FROM t", R},
    {"pg U& string is a read", P, "SELECT U&'\\0041' FROM t", R},
    {"generic U& nextval", G, "SELECT U&\"\\006Eextval\"('s')", W},

    /* more side effects (audit #9) */
    {"setseed", P, "SELECT setseed(0.5)", W},
    {"pg_backup_start", P, "SELECT pg_backup_start('x')", W},
    {"pg_backup_stop", P, "SELECT * FROM pg_backup_stop()", W},
    {"pg_start_backup", P, "SELECT pg_start_backup('x')", W},
    {"pg_stop_backup", P, "SELECT pg_stop_backup()", W},
    {"pg_wal_replay_pause", P, "SELECT pg_wal_replay_pause()", W},
    {"pg_export_snapshot", P, "SELECT pg_export_snapshot()", W},
    {"pg_log_backend_memory_contexts", P, "SELECT pg_log_backend_memory_contexts(1)", W},
    {"pg_stat_statements_reset", P, "SELECT pg_stat_statements_reset()", W},
    {"query_to_xml runs a query", P, "SELECT query_to_xml('SELECT nextval(''s'')', true, false, '')", W},
    {"ts_stat runs a query", P, "SELECT * FROM ts_stat('SELECT v FROM t')", W},
    {"lowrite", P, "SELECT lowrite(0, 'x')", W},
    {"advisory unlock all", P, "SELECT pg_advisory_unlock_all()", W},
    {"dblink_exec", P, "SELECT dblink_exec('c', 'DELETE FROM t')", W},
    {"pg named argument is a read", P, "SELECT f(a := 1) FROM t", R},
    {"mysql assign user variable", M, "SELECT @x:=1", W},
    {"mysql assign in select list", M, "SELECT @n := @n + 1 AS rn FROM t", W},
    {"mysql is_used_lock", M, "SELECT IS_USED_LOCK('x')", W},
    {"mysql is_free_lock", M, "SELECT IS_FREE_LOCK('x')", W},
    {"mysql quoted get_lock", M, "SELECT `GET_LOCK`('x', 1)", W},
    {"mysql user variable is a read", M, "SELECT @x, @@version FROM t WHERE a = @x", R},
    {"sqlite writefile", S, "SELECT writefile('/tmp/x', 'y')", W},
    {"sqlite fts3_tokenizer", S, "SELECT fts3_tokenizer('t', x'00')", W},
};

START_TEST(test_classify_table)
{
    const class_case *c = &class_cases[_i];
    bool got = sr__sql_is_read(c->sql, c->dialect);
    ck_assert_msg(got == c->read, "case \"%s\" (dialect %d): %s classified as %s, expected %s", c->name,
                  (int)c->dialect, c->sql, got ? "read" : "write", c->read ? "read" : "write");
}
END_TEST

START_TEST(test_classify_null)
{
    for (int d = G; d <= S; d++)
        ck_assert(!sr__sql_is_read(NULL, (sr_sql_dialect)d));
}
END_TEST

/*
 * Every prefix of statements full of quoting, copied to a buffer of exactly
 * its size (so ASan sees any over-read): a prefix that cuts a literal,
 * identifier or comment open is never a read, and the full statement is.
 */
START_TEST(test_classify_truncated)
{
    static const struct {
        sr_sql_dialect d;
        const char *sql;
        const char *closed; /* 'c' where a prefix ending just after that byte is complete */
    } cases[] = {
        {P, "SELECT 'ab', $t$x$t$, \"qr\", E'\\'' /* c /* d */ e */ FROM t",
         "ccccccc___ccccc____ccc___cccc___ccc_______________cccccccc"},
        {M, "SELECT 'a\\nb', \"c\", `de` # x", "ccccccc_____ccc__ccc___ccccc"},
        {S, "SELECT [a b], `c`, \"d\" -- e", "ccccccc____ccc__ccc__cccccc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].sql);
        ck_assert_uint_eq(strlen(cases[i].closed), len);
        for (size_t n = 1; n <= len; n++) {
            char *buf = malloc(n + 1);
            ck_assert_ptr_nonnull(buf);
            memcpy(buf, cases[i].sql, n);
            buf[n] = '\0';
            bool got = sr__sql_is_read(buf, cases[i].d);
            if (n == len)
                ck_assert_msg(got, "full statement %zu should be a read", i);
            if (cases[i].closed[n - 1] == '_')
                ck_assert_msg(!got, "prefix \"%s\" cuts a literal open but is a read", buf);
            free(buf);
        }
    }
}
END_TEST

/* ---- placeholder rewriting ------------------------------------------------ */

typedef struct rw_case {
    const char *name;
    sr_sql_dialect dialect;
    const char *sql;
    const char *want;
    int n;
} rw_case;

static const rw_case rw_cases[] = {
    {"one", P, "SELECT * FROM t WHERE id = ?", "SELECT * FROM t WHERE id = $1", 1},
    {"two", P, "SELECT ? , ?", "SELECT $1 , $2", 2},
    {"in parens", P, "INSERT INTO t VALUES (?,?,?)", "INSERT INTO t VALUES ($1,$2,$3)", 3},
    {"in string", P, "SELECT '?', ?", "SELECT '?', $1", 1},
    {"in doubled string", P, "SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1", 1},
    {"in E string", P, "SELECT E'\\'?', ?", "SELECT E'\\'?', $1", 1},
    {"in identifier", P, "SELECT \"a?\" FROM t WHERE b = ?", "SELECT \"a?\" FROM t WHERE b = $1", 1},
    {"in line comment", P, "SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2", 2},
    {"in block comment", P, "SELECT /* ? */ ?", "SELECT /* ? */ $1", 1},
    {"in nested comment", P, "SELECT /* /* ? */ ? */ ?", "SELECT /* /* ? */ ? */ $1", 1},
    {"in dollar quote", P, "SELECT $$?$$, $f$ ? $f$, ?", "SELECT $$?$$, $f$ ? $f$, $1", 1},
    {"jsonb ?|", P, "SELECT d ?| array['a'] FROM t WHERE id = ?", "SELECT d ?| array['a'] FROM t WHERE id = $1", 1},
    {"jsonb ?&", P, "SELECT d ?& array['a'], ?", "SELECT d ?& array['a'], $1", 1},
    {"jsonpath @?", P, "SELECT d @? '$.a', ?", "SELECT d @? '$.a', $1", 1},
    {"concat after placeholder", P, "SELECT ?||'x'", "SELECT $1||'x'", 1},
    {"cast", P, "SELECT ?::int, ?::text", "SELECT $1::int, $2::text", 2},
    {"no placeholders", P, "SELECT 1 FROM t", "SELECT 1 FROM t", 0},
    {"empty", P, "", "", 0},
    {"native kept", P, "SELECT $1, $2 FROM t", "SELECT $1, $2 FROM t", 2},
    {"native with jsonb ?", P, "SELECT d ? $1 FROM t WHERE id = $3", "SELECT d ? $1 FROM t WHERE id = $3", 3},
    {"native in string does not count", P, "SELECT '$1', ?", "SELECT '$1', $1", 1},
    {"glued to identifier", P, "SELECT a FROM t WHERE x=y?", "SELECT a FROM t WHERE x=y $1", 1},
    {"glued to digit after", P, "SELECT ?1", "SELECT $1 1", 1},
    {"after dollar", P, "SELECT $?", "SELECT $ $1", 1},
    {"mysql backtick", M, "SELECT `?` FROM t WHERE a = ? # ?", "SELECT `?` FROM t WHERE a = $1 # ?", 1},
    {"mysql backslash string", M, "SELECT 'a\\'?', ?", "SELECT 'a\\'?', $1", 1},
    {"mysql ?& is a placeholder", M, "SELECT ?&1", "SELECT $1&1", 1},
    {"sqlite brackets", S, "SELECT [?] FROM t WHERE a = ?", "SELECT [?] FROM t WHERE a = $1", 1},
    {"unterminated string", P, "SELECT ?, 'abc ?", "SELECT $1, 'abc ?", 1},
    /* native parameters are counted by their digits alone, and bounded (audit #9, item 4) */
    {"sqlite $1 then letters is a name", S, "SELECT $1abc", "SELECT $1abc", 0},
    {"sqlite native $n", S, "SELECT $12, $3", "SELECT $12, $3", 12},
    {"native $n clamped", P, "SELECT $99999999999999999999", "SELECT $99999999999999999999", INT_MAX},
    {"native $n at INT_MAX", P, "SELECT $2147483647", "SELECT $2147483647", INT_MAX},
    {"sqlite tcl variable keeps its ?", S, "SELECT $a(?) , ?", "SELECT $a(?) , $1", 1},
    {"twelve", P, "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
     "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)", 12},
};

START_TEST(test_rewrite_table)
{
    const rw_case *c = &rw_cases[_i];
    char *out = (char *)"untouched";
    int n = -1;
    int rc = sr_sql_rewrite_placeholders(c->sql, c->dialect, &out, &n);
    ck_assert_int_eq(rc, SR_OK);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(strcmp(out, c->want) == 0, "case \"%s\": got \"%s\", expected \"%s\"", c->name, out, c->want);
    ck_assert_msg(n == c->n, "case \"%s\": counted %d, expected %d", c->name, n, c->n);
    ck_assert_ptr_ne(out, c->sql); /* always a copy the caller frees */
    free(out);
}
END_TEST

START_TEST(test_rewrite_many)
{
    enum { N = 1200 };
    char *sql = malloc(N * 2 + 16);
    char *want = malloc(N * 8 + 16);
    ck_assert_ptr_nonnull(sql);
    ck_assert_ptr_nonnull(want);
    char *p = sql, *w = want;
    p += sprintf(p, "VALUES (");
    w += sprintf(w, "VALUES (");
    for (int i = 1; i <= N; i++) {
        p += sprintf(p, i < N ? "?," : "?)");
        w += sprintf(w, i < N ? "$%d," : "$%d)", i);
    }
    char *out = NULL;
    int n = 0;
    ck_assert_int_eq(sr_sql_rewrite_placeholders(sql, P, &out, &n), SR_OK);
    ck_assert_int_eq(n, N);
    ck_assert_str_eq(out, want);
    free(out);
    free(sql);
    free(want);
}
END_TEST

START_TEST(test_rewrite_args)
{
    char *out = (char *)"untouched";
    int n = 7;
    ck_assert_int_eq(sr_sql_rewrite_placeholders(NULL, P, &out, &n), SR_EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(sr_sql_rewrite_placeholders("SELECT ?", P, NULL, &n), SR_EINVAL);
    /* the count is optional */
    ck_assert_int_eq(sr_sql_rewrite_placeholders("SELECT ?, ?", P, &out, NULL), SR_OK);
    ck_assert_str_eq(out, "SELECT $1, $2");
    free(out);
}
END_TEST

/*
 * "$1" followed by letters or high bytes is one SQLite name, not parameter 1:
 * the digit accumulator once ran over them, overflowing (UBSan) and counting
 * thousands of parameters.
 */
START_TEST(test_rewrite_sqlite_name_after_digit)
{
    static const char tails[] = {'a', 'Z', '_', '$', (char)0xff, (char)0x80, '9'};
    for (size_t i = 0; i < sizeof tails; i++) {
        enum { N = 4000 };
        char *sql = malloc(N + 16);
        ck_assert_ptr_nonnull(sql);
        int len = sprintf(sql, "SELECT $1");
        memset(sql + len, tails[i], N);
        sql[len + N] = '\0';
        for (int d = G; d <= S; d++) {
            char *out = NULL;
            int n = -1;
            ck_assert_int_eq(sr_sql_rewrite_placeholders(sql, (sr_sql_dialect)d, &out, &n), SR_OK);
            ck_assert_str_eq(out, sql);
            /*
             * MySQL: "$1..." is an identifier. PostgreSQL: $1 then a word.
             * SQLite: one name. All digits: $n clamped, never wrapped.
             */
            int want = d == M ? 0 : tails[i] == '9' ? INT_MAX : d == S ? 0 : 1;
            ck_assert_msg(n == want, "dialect %d tail %02x: counted %d, expected %d", d,
                          (unsigned char)tails[i], n, want);
            free(out);
        }
        free(sql);
    }
}
END_TEST

/* The rewrite must not change how the statement classifies. */
START_TEST(test_rewrite_keeps_class)
{
    static const char *const sqls[] = {
        "SELECT * FROM t WHERE a = ? AND b = ?",
        "SELECT * FROM t WHERE a = ? FOR UPDATE",
        "SELECT x?for update",
        "SELECT $?$ ; DELETE FROM t; $$",
        "SELECT ?$$ ; DELETE FROM t $$",
        "UPDATE t SET a = ? WHERE b = ?",
    };
    for (size_t i = 0; i < sizeof sqls / sizeof sqls[0]; i++) {
        char *out = NULL;
        ck_assert_int_eq(sr_sql_rewrite_placeholders(sqls[i], P, &out, NULL), SR_OK);
        ck_assert_msg(sr__sql_is_read(sqls[i], P) == sr__sql_is_read(out, P), "\"%s\" -> \"%s\" changed class",
                      sqls[i], out);
        free(out);
    }
}
END_TEST

static Suite *classify_suite(void)
{
    Suite *s = suite_create("classify");
    TCase *tc = tcase_create("is_read");
    tcase_add_loop_test(tc, test_classify_table, 0, (int)(sizeof class_cases / sizeof class_cases[0]));
    tcase_add_test(tc, test_classify_null);
    tcase_add_test(tc, test_classify_truncated);
    suite_add_tcase(s, tc);

    tc = tcase_create("rewrite");
    tcase_add_loop_test(tc, test_rewrite_table, 0, (int)(sizeof rw_cases / sizeof rw_cases[0]));
    tcase_add_test(tc, test_rewrite_many);
    tcase_add_test(tc, test_rewrite_args);
    tcase_add_test(tc, test_rewrite_sqlite_name_after_digit);
    tcase_add_test(tc, test_rewrite_keeps_class);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(classify_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
