/*
 * The scatter merge (lib/merge.c, lib/merge_sql.c) as pure logic: plans
 * derived from SQL (what is merged, what is refused, the SQL each shard
 * gets), and the merger over shard results built here, checked against a
 * reference computed over all the rows at once.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge.h"

/* ---- shard results built by hand ---- */

typedef struct shards {
    int n;
    sr_result *res[8];
    int next[8];
} shards;

static int pull(void *ctx, int shard, sr_row_ref *out)
{
    shards *s = ctx;
    if (s->next[shard] < sr_result_nrows(s->res[shard])) {
        out->res = s->res[shard];
        out->row = s->next[shard]++;
        return 1;
    }
    out->res = s->res[shard];
    out->row = -1;
    return 0;
}

/* A result of `ncols` columns named and typed as given; values added with add(). */
static sr_result_builder begin(int shard, int ncols, const char *const *names, const sr_type *types)
{
    sr_result_builder rb;
    ck_assert_int_eq(sr__result_builder_init(&rb, shard), SR_OK);
    ck_assert_int_eq(sr_result_builder_columns(&rb, ncols, names), SR_OK);
    ck_assert_int_eq(sr_result_builder_types(&rb, types), SR_OK);
    return rb;
}

static void add(sr_result_builder *rb, const char *v)
{
    ck_assert_int_eq(sr_result_builder_value(rb, v, v ? strlen(v) : 0), SR_OK);
}

static sr_result *finish(sr_result_builder *rb)
{
    sr_result *r = sr__result_builder_finish(rb);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* Merges the shards with the plan of `sql`; the merged rows as "a|b|c\n" lines into out. */
static int merge_text(sr_sql_dialect d, const char *sql, shards *s, char *out, size_t len,
                      char *why, size_t whylen)
{
    sr_merge_plan *p = NULL;
    char *shard_sql = NULL;
    int rc = sr__merge_plan_new(sql, d, SR_MERGE_AUTO, NULL, &p, &shard_sql, why, whylen);
    if (rc != SR_OK)
        return rc;
    sr_merger *m = NULL;
    ck_assert_int_eq(sr__merger_new(p, s->n, pull, s, &m), SR_OK);
    size_t o = 0;
    out[0] = '\0';
    sr_row_ref ref;
    while ((rc = sr__merger_next(m, &ref, why, whylen)) > 0) {
        for (int c = 0; c < sr_result_ncols(ref.res) && c < sr_result_ncols(sr__merger_columns(m));
             c++) {
            const char *v = sr_result_value(ref.res, ref.row, c);
            o += (size_t)snprintf(out + o, len - o, "%s%s", c ? "|" : "", v ? v : "NULL");
        }
        o += (size_t)snprintf(out + o, len - o, "\n");
        ck_assert_uint_lt(o, len);
    }
    sr__merger_free(m);
    free(shard_sql);
    sr__merge_plan_free(p);
    return rc;
}

static void free_shards(shards *s)
{
    for (int i = 0; i < s->n; i++)
        sr_result_free(s->res[i]);
}

/* ---- derivation ---- */

typedef struct derivation {
    sr_sql_dialect d;
    const char *sql;
    const char *expect;    /* substring of the plan's description, or of the refusal with "!" */
    const char *shard_sql; /* the SQL each shard gets, or NULL when unchanged */
} derivation;

static const derivation derivations[] = {
    {SR_SQL_POSTGRES, "INSERT INTO t VALUES (1)", "concatenate", NULL},
    {SR_SQL_POSTGRES, "UPDATE t SET x = 1 ORDER BY nothing", "concatenate", NULL},
    {SR_SQL_POSTGRES, "SELECT a, b FROM t", "concatenate", NULL},
    {SR_SQL_POSTGRES, "SELECT a, b FROM t ORDER BY b DESC, a", "column 1 desc nulls first, column 0 asc nulls last", NULL},
    {SR_SQL_MYSQL, "SELECT a, b FROM t ORDER BY b DESC, a", "column 1 desc nulls last, column 0 asc nulls first", NULL},
    {SR_SQL_SQLITE, "SELECT a, b FROM t ORDER BY 2 NULLS LAST", "column 1 asc nulls last", NULL},
    {SR_SQL_POSTGRES, "SELECT id AS k, t.name FROM t ORDER BY name, k LIMIT 10 OFFSET 5",
     "column 1 asc nulls last, column 0 asc", "SELECT id AS k, t.name FROM t ORDER BY name, k LIMIT 15"},
    {SR_SQL_MYSQL, "SELECT id FROM t ORDER BY id LIMIT 5, 10", "offset 5\n  limit 10", "SELECT id FROM t ORDER BY id LIMIT 15"},
    {SR_SQL_POSTGRES, "SELECT id FROM t ORDER BY id OFFSET 2 ROWS FETCH FIRST 3 ROWS ONLY", "limit 3", "SELECT id FROM t ORDER BY id LIMIT 5"},
    {SR_SQL_POSTGRES, "SELECT id FROM t LIMIT 7", "limit 7", "SELECT id FROM t LIMIT 7"},
    {SR_SQL_POSTGRES, "SELECT count(*) FROM t", "0=count", NULL},
    {SR_SQL_POSTGRES, "select COUNT(x) AS n, SUM(y), MIN(z), max(w) from t", "0=count 1=sum 2=min 3=max", NULL},
    {SR_SQL_POSTGRES, "SELECT tenant, avg(x) FROM t GROUP BY tenant ORDER BY tenant LIMIT 3",
     "1=avg(sum / count in hidden column 2)",
     "SELECT tenant, SUM(x) AS \"avg\", COUNT(x) AS sr__count_1 FROM t GROUP BY tenant ORDER BY tenant "},
    {SR_SQL_MYSQL, "SELECT tenant, AVG(x) FROM t GROUP BY 1",
     "group by columns: 0", "SELECT tenant, SUM(x) AS `AVG(x)`, COUNT(x) AS sr__count_1 FROM t GROUP BY 1"},
    {SR_SQL_SQLITE, "SELECT DISTINCT tenant FROM t ORDER BY tenant LIMIT 2", "distinct rows", "SELECT DISTINCT tenant FROM t ORDER BY tenant "},
    {SR_SQL_POSTGRES, "SELECT a FROM t GROUP BY a", "group by columns: 0", NULL},
    {SR_SQL_POSTGRES, "WITH x AS (SELECT * FROM t ORDER BY 1 LIMIT 3) SELECT a FROM x ORDER BY a", "column 0 asc", NULL},
    {SR_SQL_POSTGRES, "SELECT a, (SELECT max(b) FROM u) AS m FROM t ORDER BY m", "column 1 asc", NULL},
    {SR_SQL_POSTGRES, "SELECT a, 'ORDER BY x' FROM t -- LIMIT 3", "concatenate", NULL},
    {SR_SQL_MYSQL, "SELECT `offset`, x AS `limit` FROM t ORDER BY `limit`", "column 1 asc", NULL},
    {SR_SQL_POSTGRES, "SELECT * FROM t ORDER BY 1", "column 0 asc", NULL},
    {SR_SQL_POSTGRES, "SELECT * FROM t", "concatenate", NULL},
    {SR_SQL_POSTGRES, "SELECT ARRAY[1, 2], b FROM t ORDER BY b", "column 1 asc", NULL},
    {SR_SQL_POSTGRES, "SELECT a FROM t FOR UPDATE", "concatenate", NULL},
    /* refused */
    {SR_SQL_POSTGRES, "SELECT count(DISTINCT x) FROM t", "!cannot be combined", NULL},
    {SR_SQL_POSTGRES, "SELECT a, count(*) FROM t GROUP BY a HAVING count(*) > 1", "!HAVING", NULL},
    {SR_SQL_POSTGRES, "SELECT a, row_number() OVER (ORDER BY a) FROM t", "!window function", NULL},
    {SR_SQL_POSTGRES, "SELECT a FROM t ORDER BY b", "!ORDER BY b", NULL},
    {SR_SQL_POSTGRES, "SELECT a FROM t ORDER BY a + 1", "!select-list columns only", NULL},
    {SR_SQL_POSTGRES, "SELECT sum(x) + 1 FROM t", "!aggregate inside an expression", NULL},
    {SR_SQL_POSTGRES, "SELECT coalesce(max(x), 0) FROM t", "!aggregate inside an expression", NULL},
    {SR_SQL_POSTGRES, "SELECT a, count(*) FROM t", "!neither aggregated nor in GROUP BY", NULL},
    {SR_SQL_POSTGRES, "SELECT a, count(*) FROM t GROUP BY lower(a)", "!GROUP BY lower(a)", NULL},
    {SR_SQL_POSTGRES, "SELECT a FROM t ORDER BY a LIMIT ?", "!plain numbers", NULL},
    {SR_SQL_POSTGRES, "SELECT a FROM t UNION SELECT a FROM u", "!UNION", NULL},
    {SR_SQL_POSTGRES, "SELECT a FROM t; SELECT b FROM u", "!several statements", NULL},
    {SR_SQL_POSTGRES, "SELECT a INTO u FROM t", "!INTO", NULL},
    {SR_SQL_POSTGRES, "SELECT *, count(*) FROM t", "!* together", NULL},
    {SR_SQL_POSTGRES, "SELECT DISTINCT count(*) FROM t", "!DISTINCT together", NULL},
    {SR_SQL_POSTGRES, "SELECT DISTINCT ON (a) a, b FROM t", "!DISTINCT ON", NULL},
    {SR_SQL_POSTGRES, "SELECT avg(?) FROM t", "!AVG over a parameter", NULL},
    {SR_SQL_POSTGRES, "SELECT a FROM t ORDER BY a COLLATE \"C\"", "!COLLATE", NULL},
    {SR_SQL_POSTGRES, "SELECT a, count(*) FROM t GROUP BY ROLLUP (a)", "!ROLLUP", NULL},
    {SR_SQL_POSTGRES, "SELECT count(*) FILTER (WHERE x > 1) FROM t", "!FILTER", NULL},
    {SR_SQL_POSTGRES, "SELECT 'open FROM t", "!inside a string", NULL},
    {SR_SQL_POSTGRES, "VALUES (1), (2) ORDER BY 1", "!VALUES", NULL},
    {SR_SQL_MYSQL, "SELECT /*! STRAIGHT_JOIN */ a FROM t ORDER BY a", "!executable comment", NULL},
};

START_TEST(plans_derived_from_sql)
{
    const derivation *d = &derivations[_i];
    sr_merge_plan *p = NULL;
    char *shard_sql = NULL;
    char why[512];
    int rc = sr__merge_plan_new(d->sql, d->d, SR_MERGE_AUTO, NULL, &p, &shard_sql, why, sizeof why);
    if (d->expect[0] == '!') {
        ck_assert_msg(rc == SR_EINVAL, "%s: accepted, expected a refusal", d->sql);
        ck_assert_msg(strstr(why, d->expect + 1) != NULL, "%s: refused with '%s', expected '%s'",
                      d->sql, why, d->expect + 1);
        ck_assert_ptr_null(p);
        ck_assert_ptr_null(shard_sql);
        return;
    }
    ck_assert_msg(rc == SR_OK, "%s: refused: %s", d->sql, why);
    char desc[1024];
    sr__merge_plan_describe(p, desc, sizeof desc);
    ck_assert_msg(strstr(desc, d->expect) != NULL, "%s: plan\n%s\nlacks '%s'", d->sql, desc,
                  d->expect);
    ck_assert_str_eq(shard_sql, d->shard_sql ? d->shard_sql : d->sql);
    free(shard_sql);
    sr__merge_plan_free(p);
}
END_TEST

/* ---- merging against a reference ---- */

static unsigned rnd_state = 12345;
static unsigned rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 16) & 0x7fff;
}

typedef struct row3 {
    int id;
    int v;      /* INT_MIN: NULL */
    char s[16];
} row3;

/* PostgreSQL order of (v ASC NULLS LAST, id); MySQL: NULLs first. */
static int nulls_last;
static int cmp_row3(const void *a, const void *b)
{
    const row3 *x = a, *y = b;
    if (x->v != y->v) {
        if (x->v == INT32_MIN)
            return nulls_last ? 1 : -1;
        if (y->v == INT32_MIN)
            return nulls_last ? -1 : 1;
        return x->v < y->v ? -1 : 1;
    }
    return x->id - y->id;
}

START_TEST(order_by_merges_like_one_sorted_table)
{
    for (int round = 0; round < 40; round++) {
        nulls_last = round % 2 == 0;
        sr_sql_dialect d = nulls_last ? SR_SQL_POSTGRES : SR_SQL_MYSQL;
        int nshards = 1 + (int)(rnd() % 6), total = 0;
        row3 all[400];
        shards s = {.n = nshards};
        const char *names[] = {"id", "v", "s"};
        const sr_type types[] = {SR_TYPE_INT, SR_TYPE_INT, SR_TYPE_TEXT};
        for (int sh = 0; sh < nshards; sh++) {
            int n = (int)(rnd() % 40); /* some shards empty */
            row3 mine[40];
            for (int k = 0; k < n; k++) {
                row3 *r = &mine[k];
                r->id = total + k;
                r->v = rnd() % 5 == 0 ? INT32_MIN : (int)(rnd() % 20) - 10;
                snprintf(r->s, sizeof r->s, "s%d", r->id);
                all[total + k] = *r;
            }
            total += n;
            qsort(mine, (size_t)n, sizeof *mine, cmp_row3);
            sr_result_builder rb = begin(sh, 3, names, types);
            for (int k = 0; k < n; k++) {
                char id[16], v[16];
                snprintf(id, sizeof id, "%d", mine[k].id);
                snprintf(v, sizeof v, "%d", mine[k].v);
                add(&rb, id);
                add(&rb, mine[k].v == INT32_MIN ? NULL : v);
                add(&rb, mine[k].s);
            }
            s.res[sh] = finish(&rb);
        }
        qsort(all, (size_t)total, sizeof *all, cmp_row3);
        int offset = (int)(rnd() % 10), limit = (int)(rnd() % 30);
        char sql[128], want[16384] = "", got[16384], why[512];
        snprintf(sql, sizeof sql, "SELECT id, v, s FROM t ORDER BY v, id LIMIT %d OFFSET %d", limit,
                 offset);
        size_t o = 0;
        for (int k = offset; k < total && k < offset + limit; k++) {
            char v[16];
            snprintf(v, sizeof v, "%d", all[k].v);
            o += (size_t)snprintf(want + o, sizeof want - o, "%d|%s|%s\n", all[k].id,
                                  all[k].v == INT32_MIN ? "NULL" : v, all[k].s);
        }
        ck_assert_int_eq(merge_text(d, sql, &s, got, sizeof got, why, sizeof why), 0);
        ck_assert_msg(strcmp(got, want) == 0, "%s (%d shards):\ngot\n%s\nwant\n%s", sql, nshards,
                      got, want);
        free_shards(&s);
    }
}
END_TEST

START_TEST(groups_and_aggregates_equal_the_reference)
{
    for (int round = 0; round < 30; round++) {
        int nshards = 1 + (int)(rnd() % 5);
        /* reference per group g in 0..4 */
        long long cnt[5] = {0}, cntx[5] = {0}, sum[5] = {0};
        int mn[5], mx[5];
        bool seen[5] = {false}, seenx[5] = {false};
        shards s = {.n = nshards};
        const char *names[] = {"g", "count", "sum", "min", "max", "avg", "sr__count_5"};
        const sr_type types[] = {SR_TYPE_INT, SR_TYPE_INT, SR_TYPE_INT, SR_TYPE_INT,
                                 SR_TYPE_INT, SR_TYPE_INT, SR_TYPE_INT};
        for (int sh = 0; sh < nshards; sh++) {
            /* What the shard's SQL returns: one row per group it has, AVG as SUM + COUNT. */
            long long c[5] = {0}, cx[5] = {0}, su[5] = {0};
            int lo[5] = {0}, hi[5] = {0};
            bool has[5] = {false}, hasx[5] = {false};
            int n = (int)(rnd() % 30);
            for (int k = 0; k < n; k++) {
                int g = (int)(rnd() % 5);
                bool null = rnd() % 4 == 0;
                int x = (int)(rnd() % 1000) - 500;
                has[g] = seen[g] = true;
                c[g]++;
                cnt[g]++;
                if (null)
                    continue;
                cx[g]++;
                cntx[g]++;
                su[g] += x;
                sum[g] += x;
                lo[g] = hasx[g] && lo[g] < x ? lo[g] : x;
                hi[g] = hasx[g] && hi[g] > x ? hi[g] : x;
                mn[g] = seenx[g] && mn[g] < x ? mn[g] : x;
                mx[g] = seenx[g] && mx[g] > x ? mx[g] : x;
                hasx[g] = seenx[g] = true;
            }
            sr_result_builder rb = begin(sh, 7, names, types);
            for (int g = 4; g >= 0; g--) { /* unsorted: the merge sorts */
                if (!has[g])
                    continue;
                char b[7][32];
                snprintf(b[0], 32, "%d", g);
                snprintf(b[1], 32, "%lld", c[g]);
                snprintf(b[2], 32, "%lld", su[g]);
                snprintf(b[3], 32, "%d", lo[g]);
                snprintf(b[4], 32, "%d", hi[g]);
                snprintf(b[5], 32, "%lld", su[g]);
                snprintf(b[6], 32, "%lld", cx[g]);
                for (int k = 0; k < 7; k++)
                    add(&rb, (k >= 2 && k <= 5 && !hasx[g]) ? NULL : b[k]);
            }
            s.res[sh] = finish(&rb);
        }
        char want[4096] = "", got[4096], why[512];
        size_t o = 0;
        for (int g = 0; g < 5; g++) {
            if (!seen[g])
                continue;
            char avg[64] = "NULL", su[32] = "NULL", lo[32] = "NULL", hi[32] = "NULL";
            if (seenx[g]) {
                snprintf(avg, sizeof avg, "%.17g", (double)sum[g] / (double)cntx[g]);
                snprintf(su, sizeof su, "%lld", sum[g]);
                snprintf(lo, sizeof lo, "%d", mn[g]);
                snprintf(hi, sizeof hi, "%d", mx[g]);
            }
            o += (size_t)snprintf(want + o, sizeof want - o, "%d|%lld|%s|%s|%s|%s\n", g, cnt[g], su,
                                  lo, hi, avg);
        }
        ck_assert_int_eq(merge_text(SR_SQL_POSTGRES,
                                    "SELECT g, count(*), sum(x), min(x), max(x), avg(x) FROM t "
                                    "GROUP BY g ORDER BY g",
                                    &s, got, sizeof got, why, sizeof why),
                         0);
        ck_assert_msg(strcmp(got, want) == 0, "got\n%s\nwant\n%s", got, want);
        free_shards(&s);
    }
}
END_TEST

/* One column of shard values, merged by `sql`; the merged column as text. */
static int one_column(const char *sql, sr_type type, const char *const *vals, int nshards,
                      int per_shard, char *got, size_t len, char *why, size_t whylen)
{
    shards s = {.n = nshards};
    const char *names[] = {"x"};
    for (int sh = 0; sh < nshards; sh++) {
        sr_result_builder rb = begin(sh, 1, names, &type);
        for (int k = 0; k < per_shard; k++)
            add(&rb, vals[sh * per_shard + k]);
        s.res[sh] = finish(&rb);
    }
    int rc = merge_text(SR_SQL_POSTGRES, sql, &s, got, len, why, whylen);
    free_shards(&s);
    return rc;
}

START_TEST(numbers_compare_and_add_exactly)
{
    char got[1024], why[512];
    /* NUMERIC order as exact decimals, each shard sorted already. */
    const char *nums[] = {"-0.5", "1.1", "9.99", "-1", "0.1", "10", "1.10", "2", "100.000"};
    ck_assert_int_eq(one_column("SELECT x FROM t ORDER BY x", SR_TYPE_NUMERIC, nums, 3, 3, got,
                                sizeof got, why, sizeof why),
                     0);
    ck_assert_str_eq(got, "-1\n-0.5\n0.1\n1.1\n1.10\n2\n9.99\n10\n100.000\n");
    /* An int64 sum that overflows becomes an exact NUMERIC. */
    const char *big[] = {"9223372036854775807", "9223372036854775807", "1"};
    ck_assert_int_eq(one_column("SELECT sum(x) FROM t", SR_TYPE_INT, big, 3, 1, got, sizeof got,
                                why, sizeof why),
                     0);
    ck_assert_str_eq(got, "18446744073709551615\n");
    /* NUMERIC sums keep the larger scale; signs mix. */
    const char *dec[] = {"1.10", "-2.255", "0.005"};
    ck_assert_int_eq(one_column("SELECT sum(x) FROM t", SR_TYPE_NUMERIC, dec, 3, 1, got,
                                sizeof got, why, sizeof why),
                     0);
    ck_assert_str_eq(got, "-1.150\n");
    /* The scale as written survives ("1346.30", not "1346.3"), as the backends print it. */
    const char *scaled[] = {"1346.30", "0"};
    ck_assert_int_eq(one_column("SELECT sum(x) FROM t", SR_TYPE_NUMERIC, scaled, 2, 1, got,
                                sizeof got, why, sizeof why),
                     0);
    ck_assert_str_eq(got, "1346.30\n");
    /* MIN / MAX by number, not text ("10" > "9"). */
    const char *mm[] = {"9", "10", "-3"};
    ck_assert_int_eq(one_column("SELECT max(x) FROM t", SR_TYPE_INT, mm, 3, 1, got, sizeof got,
                                why, sizeof why),
                     0);
    ck_assert_str_eq(got, "10\n");
    /* Text adds nothing: refused with the reason. */
    const char *txt[] = {"abc", "1"};
    ck_assert_int_eq(one_column("SELECT sum(x) FROM t", SR_TYPE_TEXT, txt, 2, 1, got, sizeof got,
                                why, sizeof why),
                     SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "cannot be added"));
    /* DISTINCT across shards: equal numbers are one value whatever their text. */
    const char *dist[] = {"1.5", "2", "1.50", "3"};
    ck_assert_int_eq(one_column("SELECT DISTINCT x FROM t ORDER BY x", SR_TYPE_NUMERIC, dist, 2, 2,
                                got, sizeof got, why, sizeof why),
                     0);
    ck_assert_str_eq(got, "1.5\n2\n3\n");
}
END_TEST

START_TEST(shards_with_other_columns_are_refused)
{
    shards s = {.n = 2};
    const char *a[] = {"x"}, *b[] = {"y"};
    sr_type t = SR_TYPE_INT;
    sr_result_builder rb = begin(0, 1, a, &t);
    add(&rb, "1");
    s.res[0] = finish(&rb);
    rb = begin(1, 1, b, &t);
    add(&rb, "2");
    s.res[1] = finish(&rb);
    char got[256], why[512];
    ck_assert_int_eq(merge_text(SR_SQL_POSTGRES, "SELECT x FROM t ORDER BY 1", &s, got, sizeof got,
                                why, sizeof why),
                     SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "shard 1"));
    free_shards(&s);
}
END_TEST

START_TEST(explicit_specs_are_checked_and_merged)
{
    sr_merge_plan *p = NULL;
    char *sql = NULL, why[512];
    sr_merge_spec spec = SR_MERGE_SPEC_INIT;
    spec.version = 99;
    ck_assert_int_eq(sr__merge_plan_new("SELECT 1", SR_SQL_POSTGRES, SR_MERGE_SPEC, &spec, &p, &sql,
                                        why, sizeof why),
                     SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "version"));
    /* Per-shard partial counts by tenant, combined and ordered by count descending. */
    spec = (sr_merge_spec)SR_MERGE_SPEC_INIT;
    const sr_agg aggs[] = {SR_AGG_NONE, SR_AGG_COUNT};
    const int group[] = {0};
    const sr_order_key order[] = {{1, 1, SR_NULLS_DEFAULT}, {0, 0, SR_NULLS_DEFAULT}};
    spec.naggs = 2;
    spec.aggs = aggs;
    spec.ngroup = 1;
    spec.group = group;
    spec.norder = 2;
    spec.order = order;
    spec.limit = 2;
    const char *q = "SELECT tenant, count(*) FROM t GROUP BY tenant HAVING count(*) > 0";
    ck_assert_int_eq(sr__merge_plan_new(q, SR_SQL_POSTGRES, SR_MERGE_SPEC, &spec, &p, &sql, why,
                                        sizeof why),
                     SR_OK);
    ck_assert_str_eq(sql, q); /* sent as written */
    shards s = {.n = 2};
    const char *names[] = {"tenant", "count"};
    const sr_type types[] = {SR_TYPE_INT, SR_TYPE_INT};
    const char *v0[] = {"1", "5", "2", "1", "3", "2"}, *v1[] = {"2", "9", "3", "1"};
    sr_result_builder rb = begin(0, 2, names, types);
    for (int k = 0; k < 6; k++)
        add(&rb, v0[k]);
    s.res[0] = finish(&rb);
    rb = begin(1, 2, names, types);
    for (int k = 0; k < 4; k++)
        add(&rb, v1[k]);
    s.res[1] = finish(&rb);
    sr_merger *m = NULL;
    ck_assert_int_eq(sr__merger_new(p, 2, pull, &s, &m), SR_OK);
    sr_row_ref ref;
    char got[256] = "";
    size_t o = 0;
    while (sr__merger_next(m, &ref, why, sizeof why) > 0)
        o += (size_t)snprintf(got + o, sizeof got - o, "%s=%s ",
                              sr_result_value(ref.res, ref.row, 0),
                              sr_result_value(ref.res, ref.row, 1));
    ck_assert_str_eq(got, "2=10 1=5 "); /* 3 has 3: cut by the limit */
    sr__merger_free(m);
    free_shards(&s);
    free(sql);
    sr__merge_plan_free(p);
    /* A column that is neither key nor aggregate. */
    const sr_agg bad[] = {SR_AGG_NONE, SR_AGG_NONE};
    spec.aggs = bad;
    p = NULL;
    sql = NULL;
    ck_assert_int_eq(sr__merge_plan_new(q, SR_SQL_POSTGRES, SR_MERGE_SPEC, &spec, &p, &sql, why,
                                        sizeof why),
                     SR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "neither"));
}
END_TEST

static Suite *merge_suite(void)
{
    Suite *su = suite_create("merge");
    TCase *tc = tcase_create("merge");
    tcase_add_loop_test(tc, plans_derived_from_sql, 0, (int)(sizeof derivations / sizeof *derivations));
    tcase_add_test(tc, order_by_merges_like_one_sorted_table);
    tcase_add_test(tc, groups_and_aggregates_equal_the_reference);
    tcase_add_test(tc, numbers_compare_and_add_exactly);
    tcase_add_test(tc, shards_with_other_columns_are_refused);
    tcase_add_test(tc, explicit_specs_are_checked_and_merged);
    suite_add_tcase(su, tc);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(merge_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
