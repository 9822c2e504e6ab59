/*
 * Allocation failures (issue 9), the way SQLite's own tests do it
 * (test_malloc.c): for every main path, fail the 1st allocation, then the
 * 2nd, ... until the path runs without reaching the failure. Each failure
 * must give SR_ENOMEM (or the documented clean error of that call), leave
 * the out-parameters untouched, leak nothing (ASan/LeakSanitizer, valgrind)
 * and leave the object usable: with failures disarmed the same call on the
 * same object succeeds and the router serves a normal statement.
 *
 * The hook: this executable is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup
 * so every reference to those functions from the library's own objects
 * (lib/ and drivers/, linked here from the static core archive) goes to the
 * __wrap_ functions below. References inside shared libraries (libsqlite3,
 * libc itself) are not redirected: SQLite's internal allocations are not
 * failed by this suite.
 *
 * Two modes per N, as SQLite's tests have: "once" fails only the N-th
 * allocation; "persistent" fails the N-th and every one after it (until
 * disarmed), which also exercises allocations made on the error path.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <shardroute.h>

#include "session.h" /* sr__positions_required(): the PostgreSQL check reads it */

/* ---- the allocation hook ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

/* Counted only while armed, so Check's and the test's own allocations never
 * shift N. Atomics: a background thread of the library would count too. */
static atomic_bool armed;
static atomic_long nalloc;   /* allocations seen since arming */
static atomic_long fail_at;  /* the allocation number that fails */
static atomic_bool persistent;
static atomic_long nfailed;  /* failures injected since arming */

static bool fail_now(void)
{
    if (!atomic_load(&armed))
        return false;
    long n = atomic_fetch_add(&nalloc, 1) + 1;
    long at = atomic_load(&fail_at);
    if (n == at || (atomic_load(&persistent) && n > at)) {
        atomic_fetch_add(&nfailed, 1);
        return true;
    }
    return false;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(n, size); }
/* A failed realloc leaves the block alone, as the real one does. */
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return fail_now() ? NULL : __real_strndup(s, n); }

/*
 * SQLite's own allocations, through its documented hook
 * (SQLITE_CONFIG_MALLOC, installed in main() before SQLite initializes):
 * counted with the library's when `count_sqlite` is set, so a second pass
 * over the statement paths also fails allocations inside SQLite (prepare,
 * step, open) and checks how the driver reports SQLITE_NOMEM.
 */
static atomic_bool count_sqlite;
static sqlite3_mem_methods sqlite_real;

static void *sqlite_malloc(int n)
{
    return atomic_load(&count_sqlite) && fail_now() ? NULL : sqlite_real.xMalloc(n);
}

static void *sqlite_realloc(void *p, int n)
{
    return atomic_load(&count_sqlite) && fail_now() ? NULL : sqlite_real.xRealloc(p, n);
}

static void hook_sqlite(void)
{
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_real) != SQLITE_OK) {
        fprintf(stderr, "cannot read SQLite's allocator\n");
        exit(EXIT_FAILURE);
    }
    sqlite3_mem_methods m = sqlite_real;
    m.xMalloc = sqlite_malloc;
    m.xRealloc = sqlite_realloc;
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK) {
        fprintf(stderr, "cannot hook SQLite's allocator\n");
        exit(EXIT_FAILURE);
    }
}

static void arm(long n, bool persist)
{
    atomic_store(&nalloc, 0);
    atomic_store(&nfailed, 0);
    atomic_store(&fail_at, n);
    atomic_store(&persistent, persist);
    atomic_store(&armed, true);
}

/* Disarms; returns how many failures were injected. */
static long disarm(void)
{
    atomic_store(&armed, false);
    return atomic_load(&nfailed);
}

/* No path may need more allocations than this: a bound, so a loop that never
 * finishes is a failure, not a hang. */
#define MAX_N 10000

/* ---- fixtures: SQLite files in a temporary directory ---- */

#define NSHARDS 3
static char dir[256];
static const char *const shard_names[NSHARDS] = {"-55", "55-aa", "aa-"};

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/sr-test-alloc-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* synchronous=off: no fsync, so the thousands of statements stay quick. */
static void shard_uri(char *buf, size_t len, int i)
{
    snprintf(buf, len, "sqlite:%s/s%d.db?synchronous=off", dir, i);
}

static sr_config *make_config(void)
{
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    for (int i = 0; i < NSHARDS; i++) {
        char uri[512];
        shard_uri(uri, sizeof uri, i);
        ck_assert_int_eq(sr_config_add_shard(c, shard_names[i]), SR_OK);
        ck_assert_int_eq(sr_config_add_node(c, shard_names[i], SR_PRIMARY, uri, 1), SR_OK);
        ck_assert_int_eq(sr_config_add_node(c, shard_names[i], SR_REPLICA, uri, 1), SR_OK);
    }
    return c;
}

static sr_router *open_router(void)
{
    sr_config *c = make_config();
    sr_router *r = NULL;
    ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    return r;
}

/* Creates the table on every shard (through a router of its own) and one row. */
static void create_tables(void)
{
    sr_router *r = open_router();
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    for (int i = 0; i < NSHARDS; i++)
        ck_assert_msg(
            sr_exec_shard(s, i, SR_WRITE,
                          "CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT, note TEXT)", 0, NULL,
                          NULL) == SR_OK,
            "%s", sr_session_errmsg(s));
    const char *p[] = {"7", "seven"};
    ck_assert_int_eq(sr_exec(s, sr_key_int(7), SR_WRITE, "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)",
                             2, p, NULL),
                     SR_OK);
    sr_session_free(s);
    sr_router_close(r);
}

/* The router serves a normal read and write: proof that it is usable. */
static void check_serves(sr_router *r)
{
    sr_session *s = NULL;
    ck_assert_int_eq(sr_session_new(r, &s), SR_OK);
    const char *p[] = {"1001", "ok"};
    ck_assert_msg(sr_exec(s, sr_key_int(1001), SR_WRITE, "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", 2,
                          p, NULL) == SR_OK,
                  "%s", sr_session_errmsg(s));
    sr_result *res = NULL;
    ck_assert_msg(sr_exec(s, sr_key_int(1001), SR_READ, "SELECT v FROM kv WHERE k = ?", 1, p, &res) == SR_OK,
                  "%s", sr_session_errmsg(s));
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "ok");
    sr_result_free(res);
    sr_session_free(s);
}

/* The out-parameter sentinel: a failed call must not write it. */
static int sentinel_obj;
#define SENTINEL ((void *)&sentinel_obj)

/* Statuses a pure allocation failure may give. */
static bool clean_status(int rc) { return rc == SR_ENOMEM; }

/*
 * The driver loop. A path is a state made by `make` (not armed), a sequence
 * of `nsteps` calls `step(state, i)` returning a status, a `check` after
 * success, and `destroy`. For N = 1, 2, ... in both modes: arm, run the
 * steps; at the first step that fails, the failure must have been injected
 * and the status be clean; disarm, run that same step again (it must now
 * succeed) and the remaining ones; then `check`. The path is done when a run
 * injects no failure. Returns how many allocations the path makes.
 */
typedef struct path {
    const char *name;
    void *(*make)(void);
    int nsteps;
    int (*step)(void *state, int i);
    void (*check)(void *state);
    void (*destroy)(void *state);
    /* Checks made after disarming on the step that failed (may be NULL). */
    void (*on_fail)(void *state, int i, int rc);
    /* Statuses other than SR_ENOMEM this path may give on a failure (0: none). */
    int also_ok;
    /* Also run with SQLite's allocations failing (paths that reach SQLite). */
    bool sqlite_too;
} path;

static long run_mode(const path *pt, bool persist)
{
    for (long n = 1;; n++) {
        ck_assert_msg(n <= MAX_N, "%s: more than %d allocations", pt->name, MAX_N);
        void *st = pt->make();
        arm(n, persist);
        int failed_step = -1, rc = SR_OK;
        for (int i = 0; i < pt->nsteps; i++) {
            rc = pt->step(st, i);
            if (rc != SR_OK) {
                failed_step = i;
                break;
            }
        }
        long injected = disarm();
        if (failed_step >= 0) {
            ck_assert_msg(injected > 0, "%s: step %d failed (%d, %s) with no allocation failure", pt->name,
                          failed_step, rc, sr_strerror(rc));
            ck_assert_msg(clean_status(rc) || (pt->also_ok && rc == pt->also_ok),
                          "%s (%s, N=%ld): step %d gave %d (%s) for an allocation failure", pt->name,
                          persist ? "persistent" : "once", n, failed_step, rc, sr_strerror(rc));
            if (pt->on_fail)
                pt->on_fail(st, failed_step, rc);
            for (int i = failed_step; i < pt->nsteps; i++) {
                int again = pt->step(st, i);
                ck_assert_msg(again == SR_OK, "%s (N=%ld): step %d after the failure: %d (%s)", pt->name, n,
                              i, again, sr_strerror(again));
            }
        }
        /* A failure the library absorbed (SR_OK all the same) is fine only if
         * the result is whole: `check` says so either way. */
        pt->check(st);
        pt->destroy(st);
        if (injected == 0)
            return n - 1;
    }
}

/* Rows of the read statement; fewer when SQLite's allocations are failed too
 * (each row allocates there, and every N runs the whole path again). */
static int read_rows = 300;

static long run_path(const path *pt)
{
    long once = run_mode(pt, false);
    long persist = run_mode(pt, true);
    ck_assert_int_eq(once, persist);
    fprintf(stderr, "alloc: %-30s %5ld allocation points\n", pt->name, once);
    /* Under valgrind (50 times slower) only the library's allocations: the
     * SQLite pass runs in the normal and ASan builds. */
    if (pt->sqlite_too && !getenv("SR_UNDER_VALGRIND")) {
        /* Once mode only: SQLite's own behaviour under persistent failure is
         * SQLite's test suite's business; what is tested here is how the
         * driver and the core report a failure inside SQLite, and a pass
         * costs a run of the path per allocation SQLite makes. */
        int rows = read_rows;
        read_rows = 3;
        atomic_store(&count_sqlite, true);
        long with_sqlite = run_mode(pt, false);
        atomic_store(&count_sqlite, false);
        read_rows = rows;
        fprintf(stderr, "alloc: %-30s %5ld allocation points with SQLite's\n", pt->name, with_sqlite);
    }
    return once;
}

/* ---- path: building a configuration in code ---- */

typedef struct cfg_state {
    sr_config *c;
    sr_router *r;
} cfg_state;

static void *cfg_make(void) { return calloc(1, sizeof(cfg_state)); }

static int cfg_step(void *vs, int i)
{
    cfg_state *s = vs;
    char uri[512];
    switch (i) {
    case 0:
        if (!s->c)
            s->c = sr_config_new();
        return s->c ? SR_OK : SR_ENOMEM;
    case 1: return sr_config_set(s->c, "balance.policy", "round_robin");
    case 2: return sr_config_set(s->c, "pool.max_size", "4");
    case 3: return sr_config_add_shard(s->c, "-80");
    case 4: return sr_config_add_shard(s->c, "tail");
    case 5: return sr_config_shard_set(s->c, "tail", "keyrange", "80-");
    case 6: shard_uri(uri, sizeof uri, 0); return sr_config_add_node(s->c, "-80", SR_PRIMARY, uri, 1);
    case 7: shard_uri(uri, sizeof uri, 0); return sr_config_add_node(s->c, "-80", SR_REPLICA, uri, 2);
    case 8: shard_uri(uri, sizeof uri, 1); return sr_config_add_node(s->c, "tail", SR_PRIMARY, uri, 1);
    case 9: return sr_config_pin_key(s->c, sr_key_int(7), "tail");
    case 10: return sr_config_pin_key(s->c, sr_key_text("acme"), "-80");
    case 11: return sr_config_pin_key(s->c, sr_key_bytes("\0\1", 2), "tail");
    default: return SR_EINVAL;
    }
}

static void cfg_check(void *vs)
{
    cfg_state *s = vs;
    ck_assert_msg(sr_router_open(s->c, &s->r) == SR_OK, "%s", sr_config_errmsg(s->c));
    ck_assert_int_eq(sr_router_nshards(s->r), 2);
    ck_assert_int_eq(sr_router_nnodes(s->r, 0), 2);
    ck_assert_int_eq(sr_router_shard_for(s->r, sr_key_int(7)), 1);
    ck_assert_int_eq(sr_router_shard_for(s->r, sr_key_text("acme")), 0);
    ck_assert_int_eq(sr_router_shard_for(s->r, sr_key_bytes("\0\1", 2)), 1);
    check_serves(s->r);
}

static void cfg_destroy(void *vs)
{
    cfg_state *s = vs;
    sr_router_close(s->r);
    sr_config_free(s->c);
    free(s);
}

START_TEST(config_building)
{
    create_tables();
    path pt = {
        .name = "config building", .make = cfg_make, .nsteps = 12, .step = cfg_step, .check = cfg_check,
        .destroy = cfg_destroy
    };
    ck_assert_int_gt(run_path(&pt), 10);
}
END_TEST

/* ---- path: `shards = N` and every distribution, up to sr_router_open ---- */

static const char *dist_name;

static int user_keymap(void *ud, sr_key key, int nshards)
{
    (void)ud;
    return key.kind == SR_KEY_INT ? (int)(key.i % nshards) : 0;
}

/* `shards = N` names shards 0, 1, ... (keyrange, covered by the config
 * building path, would name them by their exact hex ranges). */
static const char *dist_shard(int i)
{
    static const char *const numbered[NSHARDS] = {"0", "1", "2"};
    return numbered[i];
}

static void *dist_make(void) { return calloc(1, sizeof(cfg_state)); }

static int dist_step(void *vs, int i)
{
    cfg_state *s = vs;
    static const char *const ranges[] = {"..100", "100..200", "200.."};
    char uri[512];
    if (i == 0) {
        if (!s->c)
            s->c = sr_config_new();
        return s->c ? SR_OK : SR_ENOMEM;
    }
    if (i == 1)
        return strcmp(dist_name, "callback") == 0 ? sr_config_set_keymap_fn(s->c, user_keymap, NULL)
                                                  : sr_config_set(s->c, "shard.distribution", dist_name);
    if (i == 2)
        return sr_config_set(s->c, "shards", "3");
    if (i >= 3 && i < 3 + NSHARDS) {
        shard_uri(uri, sizeof uri, i - 3);
        return sr_config_add_node(s->c, dist_shard(i - 3), SR_PRIMARY, uri, 1);
    }
    if (i >= 3 + NSHARDS && i < 3 + 2 * NSHARDS)
        return strcmp(dist_name, "range") == 0
                   ? sr_config_shard_set(s->c, dist_shard(i - 3 - NSHARDS), "range", ranges[i - 3 - NSHARDS])
                   : SR_OK;
    if (i == 3 + 2 * NSHARDS)
        return sr_config_pin_key(s->c, sr_key_int(150), dist_shard(0));
    if (s->r == SENTINEL || !s->r) {
        s->r = SENTINEL;
        return sr_router_open(s->c, &s->r);
    }
    return SR_EINVAL;
}

static void dist_on_fail(void *vs, int i, int rc)
{
    cfg_state *s = vs;
    if (!s->c) /* sr_config_new() returned NULL: nothing to ask */
        return;
    ck_assert_msg(strstr(sr_config_errmsg(s->c), "out of memory") != NULL,
                  "status %d without 'out of memory' in the message: %s", rc, sr_config_errmsg(s->c));
    if (i == 4 + 2 * NSHARDS)
        ck_assert_ptr_eq(s->r, SENTINEL);
}

static void dist_check(void *vs)
{
    cfg_state *s = vs;
    ck_assert_ptr_ne(s->r, SENTINEL);
    ck_assert_int_eq(sr_router_nshards(s->r), NSHARDS);
    ck_assert_int_eq(sr_router_shard_for(s->r, sr_key_int(150)), 0);
    if (strcmp(dist_name, "range") == 0)
        ck_assert_int_eq(sr_router_shard_for(s->r, sr_key_int(1001)), 2);
    check_serves(s->r);
}

START_TEST(distributions_open)
{
    create_tables();
    static const char *const dists[] = {"jump", "modulo", "pg_hash", "range", "callback"};
    for (size_t d = 0; d < sizeof dists / sizeof dists[0]; d++) {
        dist_name = dists[d];
        char label[64];
        snprintf(label, sizeof label, "shards = 3, %s", dist_name);
        path pt = {
            .name = label, .make = dist_make, .nsteps = 5 + 2 * NSHARDS, .step = dist_step,
            .check = dist_check, .destroy = cfg_destroy, .on_fail = dist_on_fail
        };
        ck_assert_int_gt(run_path(&pt), 5);
    }
}
END_TEST

/* ---- path: sr_config_parse ----
 *
 * A failed parse has applied the lines before the bad one (documented), so
 * it cannot simply be repeated on the same config. What must hold: the
 * status is SR_ENOMEM and the message names the line; the half-parsed config
 * is consistent (opening a router from it succeeds or fails with a clean
 * SR_EINVAL, never a crash); and freeing it leaks nothing. */

static const char *parse_text_fmt =
    "# allocation failures\n"
    "balance.policy = round_robin\n"
    "pool.max_size = 4\n"
    "[shard -80]\n"
    "primary = sqlite:%s/s0.db?synchronous=off\n"
    "replica = sqlite:%s/s0.db?synchronous=off weight=2\n"
    "pin_int = 7\n"
    "[shard tail]\n"
    "keyrange = 80-\n"
    "primary = sqlite:%s/s1.db?synchronous=off\n"
    "pin_text = acme\n";

START_TEST(config_parse)
{
    create_tables();
    char text[2048], file[512];
    snprintf(text, sizeof text, parse_text_fmt, dir, dir, dir);
    snprintf(file, sizeof file, "%s/shardroute.conf", dir);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    long points = -1;
    /* 0, 1: sr_config_parse once and persistent; 2, 3: sr_config_load_file. */
    for (int variant = 0; variant < 4; variant++) {
        bool persist = variant % 2, from_file = variant >= 2;
        if (variant == 2)
            points = -1;
        for (long n = 1;; n++) {
            ck_assert_int_le(n, MAX_N);
            sr_config *c = sr_config_new();
            ck_assert_ptr_nonnull(c);
            arm(n, persist);
            int rc = from_file ? sr_config_load_file(c, file) : sr_config_parse(c, text);
            long injected = disarm();
            if (injected == 0) {
                ck_assert_msg(rc == SR_OK, "%s", sr_config_errmsg(c));
                sr_router *r = NULL;
                ck_assert_msg(sr_router_open(c, &r) == SR_OK, "%s", sr_config_errmsg(c));
                ck_assert_int_eq(sr_router_shard_for(r, sr_key_int(7)), 0);
                ck_assert_int_eq(sr_router_shard_for(r, sr_key_text("acme")), 1);
                check_serves(r);
                sr_router_close(r);
                sr_config_free(c);
                ck_assert(points < 0 || points == n - 1);
                points = n - 1;
                if (persist)
                    fprintf(stderr, "alloc: %-30s %5ld allocation points\n",
                            from_file ? "sr_config_load_file" : "sr_config_parse", points);
                break;
            }
            ck_assert_msg(rc == SR_ENOMEM, "parse N=%ld: %d (%s): %s", n, rc, sr_strerror(rc),
                          sr_config_errmsg(c));
            /* Which line, unless the file's buffer itself could not be had. */
            ck_assert_msg(strstr(sr_config_errmsg(c), "line ") != NULL ||
                              (from_file && n == 1 && strstr(sr_config_errmsg(c), "reading") != NULL),
                          "%s", sr_config_errmsg(c));
            ck_assert_msg(strstr(sr_config_errmsg(c), "out of memory") != NULL, "%s", sr_config_errmsg(c));
            sr_router *r = SENTINEL;
            int orc = sr_router_open(c, &r);
            ck_assert_msg(orc == SR_OK || orc == SR_EINVAL, "open after a failed parse: %d %s", orc,
                          sr_config_errmsg(c));
            if (orc == SR_OK) {
                check_serves(r);
                sr_router_close(r);
            } else {
                ck_assert_ptr_eq(r, SENTINEL);
            }
            /* The config takes more calls: a pin for a shard that exists
             * (the first line of a shard section always applies before
             * anything else allocates for it) or a clean SR_EINVAL. */
            int prc = sr_config_pin_key(c, sr_key_int(99), "-80");
            ck_assert(prc == SR_OK || prc == SR_EINVAL);
            sr_config_free(c);
        }
    }
    ck_assert_int_gt(points, 5);
}
END_TEST

/* ---- path: sr_router_open ---- */

typedef struct open_state {
    sr_config *c;
    sr_router *r;
} open_state;

static void *open_make(void)
{
    open_state *s = calloc(1, sizeof *s);
    s->c = make_config();
    ck_assert_int_eq(sr_config_pin_key(s->c, sr_key_text("acme"), "aa-"), SR_OK);
    s->r = SENTINEL;
    return s;
}

static int open_step(void *vs, int i)
{
    (void)i;
    open_state *s = vs;
    return sr_router_open(s->c, &s->r);
}

static void open_on_fail(void *vs, int i, int rc)
{
    (void)i;
    open_state *s = vs;
    ck_assert_ptr_eq(s->r, SENTINEL);
    ck_assert_msg(strstr(sr_config_errmsg(s->c), "out of memory") != NULL,
                  "status %d without 'out of memory' in the message: %s", rc, sr_config_errmsg(s->c));
}

static void open_check(void *vs)
{
    open_state *s = vs;
    ck_assert_int_eq(sr_router_nshards(s->r), NSHARDS);
    ck_assert_int_eq(sr_router_shard_for(s->r, sr_key_text("acme")), 2);
    check_serves(s->r);
}

static void open_destroy(void *vs)
{
    open_state *s = vs;
    sr_router_close(s->r);
    sr_config_free(s->c);
    free(s);
}

START_TEST(router_open)
{
    create_tables();
    path pt = {
        .name = "sr_router_open", .make = open_make, .nsteps = 1, .step = open_step, .check = open_check,
        .destroy = open_destroy, .on_fail = open_on_fail
    };
    ck_assert_int_gt(run_path(&pt), 5);
}
END_TEST

/* ---- paths on an open router: a session, statements ---- */

typedef struct sess_state {
    sr_router *r;
    sr_session *s;   /* the session the steps use */
    sr_session *s2;  /* made by the session_new step */
    sr_result *res;
    const char *token;
    bool warm;       /* connections opened before arming */
    bool commit_failed;
    bool rollback_failed;
    bool txn_aborted; /* a failed statement ended the transaction (reported) */
    int txn_rows;
} sess_state;

static void *sess_make_common(bool with_session, bool warm)
{
    sess_state *s = calloc(1, sizeof *s);
    s->r = open_router();
    s->s2 = SENTINEL;
    s->res = SENTINEL;
    s->warm = warm;
    if (with_session) {
        ck_assert_int_eq(sr_session_new(s->r, &s->s), SR_OK);
        if (warm) {
            /* One statement per node: every pool has an idle connection. */
            for (int i = 0; i < NSHARDS; i++) {
                ck_assert_int_eq(sr_exec_shard(s->s, i, SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_OK);
                ck_assert_int_eq(sr_exec_shard(s->s, i, SR_READ, "SELECT 1", 0, NULL, NULL), SR_OK);
            }
        }
    }
    return s;
}

static void *sess_make_bare(void) { return sess_make_common(false, false); }
static void *sess_make_cold(void) { return sess_make_common(true, false); }
static void *sess_make_warm(void) { return sess_make_common(true, true); }

static void sess_destroy(void *vs)
{
    sess_state *s = vs;
    if (s->res != SENTINEL)
        sr_result_free(s->res);
    if (s->s2 != SENTINEL)
        sr_session_free(s->s2);
    sr_session_free(s->s);
    sr_router_close(s->r);
    free(s);
}

/* Steps run armed, so they assert nothing (a passing Check assertion
 * allocates); this runs after disarming, on the step that failed: the
 * out-parameters are untouched and the session's message says why. */
static void failed_call_checks(sess_state *s, bool res_untouched, int rc)
{
    if (res_untouched)
        ck_assert_ptr_eq(s->res, SENTINEL);
    ck_assert_ptr_eq(s->s2, SENTINEL);
    if (s->s)
        ck_assert_msg(strstr(sr_session_errmsg(s->s), "out of memory") != NULL,
                      "status %d without 'out of memory' in the message: %s", rc, sr_session_errmsg(s->s));
}

static void sess_on_fail(void *vs, int i, int rc)
{
    (void)i;
    failed_call_checks(vs, true, rc);
}

static int session_new_step(void *vs, int i)
{
    (void)i;
    sess_state *s = vs;
    return sr_session_new(s->r, &s->s2);
}

static void session_new_check(void *vs)
{
    sess_state *s = vs;
    ck_assert_ptr_ne(s->s2, SENTINEL);
    ck_assert_int_eq(sr_exec(s->s2, sr_key_int(7), SR_READ, "SELECT v FROM kv WHERE k = 7", 0, NULL, NULL),
                     SR_OK);
    check_serves(s->r);
}

START_TEST(session_new)
{
    create_tables();
    path pt = {
        .name = "sr_session_new", .make = sess_make_bare, .nsteps = 1, .step = session_new_step,
        .check = session_new_check, .destroy = sess_destroy, .on_fail = sess_on_fail
    };
    ck_assert_int_gt(run_path(&pt), 0);
}
END_TEST

/* A write with parameters. */
static int write_step(void *vs, int i)
{
    (void)i;
    sess_state *s = vs;
    const char *p[] = {"42", "forty-two", NULL};
    return sr_exec(s->s, sr_key_int(42), SR_AUTO, "INSERT OR REPLACE INTO kv (k, v, note) VALUES (?, ?, ?)",
                   3, p, &s->res);
}

static void write_check(void *vs)
{
    sess_state *s = vs;
    ck_assert_ptr_ne(s->res, SENTINEL);
    ck_assert_int_eq(sr_result_affected(s->res), 1);
    ck_assert_int_eq(sr_result_nrows(s->res), 0);
    sr_result *rd = NULL;
    ck_assert_int_eq(
        sr_exec(s->s, sr_key_int(42), SR_READ, "SELECT v, note FROM kv WHERE k = 42", 0, NULL, &rd), SR_OK);
    ck_assert_int_eq(sr_result_nrows(rd), 1);
    ck_assert_str_eq(sr_result_value(rd, 0, 0), "forty-two");
    ck_assert(sr_result_is_null(rd, 0, 1));
    sr_result_free(rd);
    check_serves(s->r);
}

START_TEST(exec_write_cold)
{
    create_tables();
    path pt = {
        .name = "sr_exec write (connect)", .make = sess_make_cold, .nsteps = 1, .step = write_step,
        .check = write_check, .destroy = sess_destroy, .on_fail = sess_on_fail, .sqlite_too = true
    };
    ck_assert_int_gt(run_path(&pt), 3);
}
END_TEST

START_TEST(exec_write_warm)
{
    create_tables();
    path pt = {
        .name = "sr_exec write (pooled)", .make = sess_make_warm, .nsteps = 1, .step = write_step,
        .check = write_check, .destroy = sess_destroy, .on_fail = sess_on_fail, .sqlite_too = true
    };
    ck_assert_int_gt(run_path(&pt), 1);
}
END_TEST

/* A trace context set, then a traced write and a traced scatter (the session's buffer). */
static int trace_step(void *vs, int i)
{
    sess_state *s = vs;
    if (i == 0) {
        const char *tags[] = {"route", "/kv/{k}"};
        return sr_session_set_trace(s->s, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                    1, tags);
    }
    if (i == 1) {
        const char *p[] = {"43", "forty-three"};
        return sr_exec(s->s, sr_key_int(43), SR_AUTO, "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)",
                       2, p, &s->res);
    }
    sr_result *all = NULL;
    int rc = sr_exec_all(s->s, SR_AUTO, "SELECT count(*) FROM kv WHERE k = 43", 0, NULL, &all);
    sr_result_free(all);
    return rc;
}

static void trace_on_fail(void *vs, int i, int rc)
{
    failed_call_checks(vs, i < 2, rc);
}

static void trace_check(void *vs)
{
    sess_state *s = vs;
    ck_assert_ptr_ne(s->res, SENTINEL);
    ck_assert_int_eq(sr_result_affected(s->res), 1);
    sr_result *rd = NULL;
    ck_assert_int_eq(sr_exec(s->s, sr_key_int(43), SR_READ, "SELECT v FROM kv WHERE k = 43", 0, NULL, &rd),
                     SR_OK);
    ck_assert_str_eq(sr_result_value(rd, 0, 0), "forty-three");
    sr_result_free(rd);
    check_serves(s->r);
}

START_TEST(traced_statements)
{
    create_tables();
    path pt = {
        .name = "sr_session_set_trace + traced", .make = sess_make_warm, .nsteps = 3,
        .step = trace_step, .check = trace_check, .destroy = sess_destroy, .on_fail = trace_on_fail
    };
    ck_assert_int_gt(run_path(&pt), 2);
}
END_TEST

/* A read with rows: more than the inline store and the stack column array
 * hold, so every growth path of a result runs. */
static const char *read_sql(void)
{
    static char sql[1024];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "SELECT i, printf('%%0200d', i) AS wide, NULL AS empty, ? AS param, "
             "1 AS c5, 2 AS c6, 3 AS c7, 4 AS c8, 5 AS c9, 6 AS c10, 7 AS c11, 8 AS c12, 9 AS c13, "
             "10 AS c14, 11 AS c15, 12 AS c16, 13 AS c17, 14 AS c18 FROM n",
             read_rows);
    return sql;
}

static int read_step(void *vs, int i)
{
    (void)i;
    sess_state *s = vs;
    const char *p[] = {"hello"};
    return sr_exec(s->s, sr_key_int(7), SR_AUTO, read_sql(), 1, p, &s->res);
}

static void check_read_result(const sr_result *res, int nshards)
{
    ck_assert_int_eq(sr_result_nrows(res), read_rows * nshards);
    ck_assert_int_eq(sr_result_ncols(res), 18);
    ck_assert_str_eq(sr_result_colname(res, 1), "wide");
    ck_assert_str_eq(sr_result_colname(res, 17), "c18");
    char last[16];
    snprintf(last, sizeof last, "%d", read_rows);
    ck_assert_str_eq(sr_result_value(res, read_rows - 1, 0), last);
    ck_assert_uint_eq(sr_result_length(res, read_rows - 1, 1), 200);
    ck_assert(sr_result_is_null(res, 5, 2));
    ck_assert_str_eq(sr_result_value(res, 0, 3), "hello");
    ck_assert_str_eq(sr_result_value(res, 0, 17), "14");
}

static void read_check(void *vs)
{
    sess_state *s = vs;
    check_read_result(s->res, 1);
    ck_assert_int_eq(sr_result_shard(s->res, 0), sr_router_shard_for(s->r, sr_key_int(7)));
    check_serves(s->r);
}

START_TEST(exec_read_cold)
{
    create_tables();
    path pt = {
        .name = "sr_exec read (connect)", .make = sess_make_cold, .nsteps = 1, .step = read_step,
        .check = read_check, .destroy = sess_destroy, .on_fail = sess_on_fail
    };
    ck_assert_int_gt(run_path(&pt), 3);
}
END_TEST

START_TEST(exec_read_warm)
{
    create_tables();
    path pt = {
        .name = "sr_exec read (pooled)", .make = sess_make_warm, .nsteps = 1, .step = read_step,
        .check = read_check, .destroy = sess_destroy, .on_fail = sess_on_fail, .sqlite_too = true
    };
    ck_assert_int_gt(run_path(&pt), 3);
}
END_TEST

/* sr_exec_opts and sr_exec_shard on the same read. */
static int read_opts_step(void *vs, int i)
{
    sess_state *s = vs;
    const char *p[] = {"hello"};
    sr_read_opts o = SR_READ_OPTS_INIT;
    o.consistency = SR_CONSISTENCY_MONOTONIC;
    if (i == 0)
        return sr_exec_opts(s->s, sr_key_int(7), SR_READ, &o, read_sql(), 1, p, &s->res);
    if (s->res != SENTINEL)
        sr_result_free(s->res);
    s->res = SENTINEL;
    return sr_exec_shard(s->s, 2, SR_READ, read_sql(), 1, p, &s->res);
}

static void read_opts_check(void *vs)
{
    sess_state *s = vs;
    check_read_result(s->res, 1);
    ck_assert_int_eq(sr_result_shard(s->res, 0), 2);
    check_serves(s->r);
}

START_TEST(exec_opts_and_shard)
{
    create_tables();
    path pt = {
        .name = "sr_exec_opts + sr_exec_shard", .make = sess_make_warm, .nsteps = 2, .step = read_opts_step,
        .check = read_opts_check, .destroy = sess_destroy, .on_fail = sess_on_fail
    };
    ck_assert_int_gt(run_path(&pt), 3);
}
END_TEST

/* ---- scatter ---- */

static int scatter_read_step(void *vs, int i)
{
    (void)i;
    sess_state *s = vs;
    const char *p[] = {"hello"};
    return sr_exec_all(s->s, SR_READ, read_sql(), 1, p, &s->res);
}

static void scatter_read_check(void *vs)
{
    sess_state *s = vs;
    check_read_result(s->res, NSHARDS);
    for (int sh = 0; sh < NSHARDS; sh++)
        ck_assert_int_eq(sr_result_shard(s->res, sh * read_rows + read_rows - 1), sh);
    check_serves(s->r);
}

START_TEST(scatter_read)
{
    create_tables();
    /* A shard that fails while others succeed is SR_EPARTIAL (documented). */
    path pt = {
        .name = "sr_exec_all read (connect)", .make = sess_make_cold, .nsteps = 1, .step = scatter_read_step,
        .check = scatter_read_check, .destroy = sess_destroy, .on_fail = sess_on_fail, .also_ok = SR_EPARTIAL
    };
    ck_assert_int_gt(run_path(&pt), 5);
    /* Not with SQLite's allocations: the same driver code as one read, three
     * times the runs (the scatter write below has that pass). */
    path warm = {
        .name = "sr_exec_all read (pooled)", .make = sess_make_warm, .nsteps = 1, .step = scatter_read_step,
        .check = scatter_read_check, .destroy = sess_destroy, .on_fail = sess_on_fail, .also_ok = SR_EPARTIAL
    };
    ck_assert_int_gt(run_path(&warm), 5);
}
END_TEST

/* A scatter write changes every shard; repeating it after a failure must
 * succeed, and the sum of changes is checked. */
static int scatter_write_step(void *vs, int i)
{
    (void)i;
    sess_state *s = vs;
    const char *p[] = {"touched"};
    return sr_exec_all(s->s, SR_WRITE, "UPDATE kv SET note = ?", 1, p, &s->res);
}

static void scatter_write_check(void *vs)
{
    sess_state *s = vs;
    /* Every row of every shard, counted by a scatter read. */
    sr_result *all = NULL;
    ck_assert_int_eq(sr_exec_all(s->s, SR_READ, "SELECT k FROM kv WHERE note = 'touched'", 0, NULL, &all),
                     SR_OK);
    ck_assert_int_ge(sr_result_nrows(all), 1);
    ck_assert_int_eq(sr_result_affected(s->res), sr_result_nrows(all));
    sr_result_free(all);
    check_serves(s->r);
}

START_TEST(scatter_write)
{
    create_tables();
    /* A failure after some shards ran is SR_EPARTIAL (documented: the message
     * names the shards that failed); the statement is repeatable. */
    path pt = {
        .name = "sr_exec_all write", .make = sess_make_warm, .nsteps = 1, .step = scatter_write_step,
        .check = scatter_write_check, .destroy = sess_destroy, .on_fail = sess_on_fail,
        .also_ok = SR_EPARTIAL, .sqlite_too = true
    };
    ck_assert_int_gt(run_path(&pt), 2);
}
END_TEST

/* A scatter cursor read to its end: the rows of every shard, whatever failed before. */
static int scatter_cursor_step(void *vs, int i)
{
    (void)i;
    sess_state *s = vs;
    sr_value p = sr_value_text("hello");
    sr_scatter_opts o = SR_SCATTER_OPTS_INIT;
    o.merge = SR_MERGE_CONCAT;
    sr_cursor *c = NULL;
    int rc = sr_cursor_open_all(s->s, SR_READ, &o, read_sql(), 1, &p, &c);
    if (rc != SR_OK)
        return rc;
    int n = 0;
    while ((rc = sr_cursor_next(c)) == 1) {
        int row;
        const sr_result *res = sr_cursor_row(c, &row);
        /* No Check assertion while allocations fail (Check allocates): counted instead. */
        const char *v = sr_result_value(res, row, 3);
        n += v && strcmp(v, "hello") == 0 ? 1 : 1000000;
    }
    sr_cursor_close(c);
    if (rc == 0)
        s->txn_rows = n;
    return rc;
}

static void scatter_cursor_check(void *vs)
{
    sess_state *s = vs;
    ck_assert_int_eq(s->txn_rows, NSHARDS * read_rows);
    check_serves(s->r);
}

/* A typed read on one shard. */
static int typed_read_step(void *vs, int i)
{
    (void)i;
    sess_state *s = vs;
    sr_value p = sr_value_bytes("hel\0lo", 6);
    return sr_exec_values(s->s, sr_key_int(1), SR_READ, NULL, read_sql(), 1, &p, &s->res);
}

static void typed_read_check(void *vs)
{
    sess_state *s = vs;
    ck_assert_int_eq(sr_result_nrows(s->res), read_rows);
    size_t len = 0;
    const char *v = sr_result_bytes(s->res, 0, 3, &len);
    ck_assert_int_eq((int)len, 6);
    ck_assert_int_eq(memcmp(v, "hel\0lo", 6), 0);
    check_serves(s->r);
}

START_TEST(cursors_and_typed_values)
{
    create_tables();
    path cur = {
        .name = "sr_cursor_open_all + next", .make = sess_make_warm, .nsteps = 1,
        .step = scatter_cursor_step, .check = scatter_cursor_check, .destroy = sess_destroy,
        .on_fail = sess_on_fail, .also_ok = SR_EPARTIAL, .sqlite_too = true
    };
    ck_assert_int_gt(run_path(&cur), 2);
    path typed = {
        .name = "sr_exec_values read", .make = sess_make_warm, .nsteps = 1,
        .step = typed_read_step, .check = typed_read_check, .destroy = sess_destroy,
        .on_fail = sess_on_fail
    };
    ck_assert_int_gt(run_path(&typed), 0);
}
END_TEST

/* ---- transactions ---- */

/* begin, a write, a read with rows, commit. */
static int txn_step(void *vs, int i)
{
    sess_state *s = vs;
    const char *p[] = {"77", "in-txn"};
    switch (i) {
    case 0: return sr_begin(s->s, sr_key_int(77));
    case 1:
    case 2:
        if (!sr_in_transaction(s->s)) {
            /* Only after a failure that ended the transaction and said so
             * (txn_on_fail): then it is begun again, disarmed. */
            if (!s->txn_aborted)
                return SR_ETXN; /* not a status an allocation failure may give */
            s->txn_aborted = false;
            int rc = sr_begin(s->s, sr_key_int(77));
            if (rc == SR_OK && i == 2)
                rc = sr_exec(s->s, sr_key_int(77), SR_WRITE, "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)",
                             2, p, NULL);
            if (rc != SR_OK)
                return rc;
        }
        if (i == 1)
            return sr_exec(s->s, sr_key_int(77), SR_AUTO, "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", 2,
                           p, NULL);
        {
            int rc = sr_exec(s->s, sr_key_int(77), SR_READ, "SELECT k, v FROM kv WHERE k = ?", 1, p, &s->res);
            if (rc == SR_OK) {
                s->txn_rows = sr_result_nrows(s->res);
                sr_result_free(s->res);
                s->res = SENTINEL;
            }
            return rc;
        }
    case 3: {
        if (s->commit_failed) {
            /* A failed commit has rolled back and unpinned (documented):
             * the transaction is done again, disarmed. */
            if (sr_in_transaction(s->s))
                return SR_ETXN;
            int rc;
            if ((rc = sr_begin(s->s, sr_key_int(77))) != SR_OK ||
                (rc = sr_exec(s->s, sr_key_int(77), SR_WRITE,
                              "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", 2, p, NULL)) != SR_OK)
                return rc;
        }
        int rc = sr_commit(s->s);
        s->commit_failed = rc != SR_OK;
        return rc;
    }
    default: return SR_EINVAL;
    }
}

/* A statement that fails inside a transaction leaves it open, unless the
 * backend ended it (SQLite rolls back on some out-of-memory errors): then the
 * session is out of the transaction and the message says it was aborted. */
static void txn_aborted_check(sess_state *s, bool statement_step)
{
    if (statement_step && !sr_in_transaction(s->s)) {
        ck_assert_msg(strstr(sr_session_errmsg(s->s), "transaction was aborted") != NULL, "%s",
                      sr_session_errmsg(s->s));
        s->txn_aborted = true;
    }
}

static void txn_on_fail(void *vs, int i, int rc)
{
    sess_on_fail(vs, i, rc);
    txn_aborted_check(vs, i == 1 || i == 2);
}

static void txn_rb_on_fail(void *vs, int i, int rc)
{
    failed_call_checks(vs, i < 5, rc); /* step 4 has made the result */
    txn_aborted_check(vs, i == 1 || i == 4);
}

static void txn_check(void *vs)
{
    sess_state *s = vs;
    ck_assert_int_eq(s->txn_rows, 1);
    ck_assert(!sr_in_transaction(s->s));
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec(s->s, sr_key_int(77), SR_READ, "SELECT v FROM kv WHERE k = 77", 0, NULL, &res),
                     SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 1);
    ck_assert_str_eq(sr_result_value(res, 0, 0), "in-txn");
    sr_result_free(res);
    ck_assert_int_eq(sr_exec(s->s, sr_key_int(77), SR_WRITE, "DELETE FROM kv WHERE k = 77", 0, NULL, NULL),
                     SR_OK);
    check_serves(s->r);
}

START_TEST(transaction_commit)
{
    create_tables();
    path cold = {
        .name = "transaction (connect)", .make = sess_make_cold, .nsteps = 4, .step = txn_step,
        .check = txn_check, .destroy = sess_destroy, .on_fail = txn_on_fail
    };
    ck_assert_int_gt(run_path(&cold), 3);
    path warm = {
        .name = "transaction (pooled)", .make = sess_make_warm, .nsteps = 4, .step = txn_step,
        .check = txn_check, .destroy = sess_destroy, .on_fail = txn_on_fail, .sqlite_too = true
    };
    ck_assert_int_gt(run_path(&warm), 2);
}
END_TEST

/* begin on a shard index, a write, rollback; then a read-only transaction. */
static int txn_rb_step(void *vs, int i)
{
    sess_state *s = vs;
    switch (i) {
    case 0: return sr_begin_shard(s->s, 1);
    case 1:
        if (!sr_in_transaction(s->s)) {
            if (!s->txn_aborted)
                return SR_ETXN;
            s->txn_aborted = false;
            int rc = sr_begin_shard(s->s, 1);
            if (rc != SR_OK)
                return rc;
        }
        return sr_exec_shard(s->s, 1, SR_WRITE, "INSERT OR REPLACE INTO kv (k, v) VALUES (-5, 'x')", 0, NULL,
                             NULL);
    case 2:
    case 5:
        /* A failed rollback unpins the session all the same (documented):
         * asked again, there is nothing left to roll back. */
        if (s->rollback_failed && !sr_in_transaction(s->s)) {
            s->rollback_failed = false;
            return SR_OK;
        }
        s->rollback_failed = false;
        {
            int rc = sr_rollback(s->s);
            s->rollback_failed = rc != SR_OK;
            return rc;
        }
    case 3: return sr_begin_read_only(s->s, sr_key_int(7));
    case 4:
        if (!sr_in_transaction(s->s)) {
            if (!s->txn_aborted)
                return SR_ETXN;
            s->txn_aborted = false;
            int rc = sr_begin_read_only(s->s, sr_key_int(7));
            if (rc != SR_OK)
                return rc;
        }
        return sr_exec(s->s, sr_key_int(7), SR_AUTO, "SELECT v FROM kv WHERE k = 7", 0, NULL, &s->res);
    default: return SR_EINVAL;
    }
}

static void txn_rb_check(void *vs)
{
    sess_state *s = vs;
    ck_assert(!sr_in_transaction(s->s));
    ck_assert_str_eq(sr_result_value(s->res, 0, 0), "seven");
    sr_result *res = NULL;
    ck_assert_int_eq(sr_exec_shard(s->s, 1, SR_READ, "SELECT 1 FROM kv WHERE k = -5", 0, NULL, &res), SR_OK);
    ck_assert_int_eq(sr_result_nrows(res), 0);
    sr_result_free(res);
    check_serves(s->r);
}

START_TEST(transaction_rollback_read_only)
{
    create_tables();
    path pt = {
        .name = "rollback + read-only txn", .make = sess_make_warm, .nsteps = 6, .step = txn_rb_step,
        .check = txn_rb_check, .destroy = sess_destroy, .on_fail = txn_rb_on_fail, .sqlite_too = true
    };
    ck_assert_int_gt(run_path(&pt), 2);
}
END_TEST

/* ---- session tokens ----
 *
 * SQLite has no replication positions, so a session's token is "" and a
 * token's entries are for shards of another router (ignored, with a log
 * line) or positions SQLite cannot hold (SR_EINVAL). The header of a token
 * is computed here as the library does (the topology id), so the test can
 * hand it a well-formed token. */

static uint64_t sqlite_topology_id(void)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, "shardroute-topology", 19);
    XXH3_64bits_update(&st, "keyrange", 8);
    XXH3_64bits_update(&st, "|sqlite", 7);
    return XXH3_64bits_digest(&st);
}

static int nlogs;
static void count_log(void *ud, sr_log_level level, const char *msg)
{
    (void)ud;
    (void)level;
    (void)msg;
    nlogs++;
}

static void *token_make(void)
{
    sess_state *s = calloc(1, sizeof *s);
    sr_config *c = make_config();
    ck_assert_int_eq(sr_config_set_log_fn(c, count_log, NULL), SR_OK);
    ck_assert_int_eq(sr_router_open(c, &s->r), SR_OK);
    sr_config_free(c);
    ck_assert_int_eq(sr_session_new(s->r, &s->s), SR_OK);
    for (int i = 0; i < NSHARDS; i++)
        ck_assert_int_eq(sr_exec_shard(s->s, i, SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_OK);
    s->s2 = SENTINEL;
    s->res = SENTINEL;
    return s;
}

static int token_step(void *vs, int i)
{
    sess_state *s = vs;
    char tok[256];
    switch (i) {
    case 0: {
        const char *p[] = {"5", "five"};
        return sr_exec(s->s, sr_key_int(5), SR_WRITE, "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", 2, p,
                       NULL);
    }
    case 1:
        s->token = sr_session_token(s->s);
        return s->token ? SR_OK : SR_ENOMEM;
    case 2: return sr_session_set_token(s->s, s->token);
    case 3:
        snprintf(tok, sizeof tok, "sr1;c=%016llx;other%%20shard=0%%2F16B3748;elsewhere=1",
                 (unsigned long long)sqlite_topology_id());
        return sr_session_set_token(s->s, tok);
    case 4: {
        snprintf(tok, sizeof tok, "sr1;c=%016llx", (unsigned long long)sqlite_topology_id());
        return sr_session_set_token(s->s, tok);
    }
    default: return SR_EINVAL;
    }
}

static void token_check(void *vs)
{
    sess_state *s = vs;
    ck_assert_ptr_nonnull(s->token);
    ck_assert_str_eq(s->token, ""); /* SQLite: no positions */
    /* A token for this topology with a position on one of its shards: SQLite
     * cannot hold one, so it is refused cleanly. */
    char tok[256];
    snprintf(tok, sizeof tok, "sr1;c=%016llx;-55=1", (unsigned long long)sqlite_topology_id());
    ck_assert_int_eq(sr_session_set_token(s->s, tok), SR_EINVAL);
    ck_assert_int_eq(sr_session_set_token(s->s, "sr1;c=0000000000000000"), SR_EINVAL);
    ck_assert_ptr_nonnull(sr_session_token(s->s));
    check_serves(s->r);
}

START_TEST(session_tokens)
{
    create_tables();
    path pt = {
        .name = "session tokens", .make = token_make, .nsteps = 5, .step = token_step, .check = token_check,
        .destroy = sess_destroy, .on_fail = sess_on_fail, .sqlite_too = true
    };
    ck_assert_int_gt(run_path(&pt), 0);
}
END_TEST

/* ---- result accessors allocate nothing ---- */

START_TEST(result_accessors)
{
    create_tables();
    sess_state *s = sess_make_warm();
    const char *p[] = {"hello"};
    ck_assert_msg(sr_exec_all(s->s, SR_READ, read_sql(), 1, p, &s->res) == SR_OK, "%s",
                  sr_session_errmsg(s->s));
    /* Every allocation fails: the accessors must not need any. Nothing is
     * asserted while armed (a passing Check assertion allocates). */
    arm(1, true);
    int nrows = sr_result_nrows(s->res), ncols = sr_result_ncols(s->res);
    size_t total = 0;
    int nulls = 0, bad = 0;
    for (int r = 0; r < nrows; r++) {
        bad += sr_result_shard(s->res, r) < 0;
        for (int c = 0; c < ncols; c++) {
            nulls += sr_result_is_null(s->res, r, c);
            total += sr_result_length(s->res, r, c);
            const char *v = sr_result_value(s->res, r, c);
            bad += v == NULL && !sr_result_is_null(s->res, r, c);
        }
    }
    for (int c = 0; c < ncols; c++)
        bad += sr_result_colname(s->res, c) == NULL;
    bad += sr_result_colname(s->res, ncols) != NULL;
    bad += sr_result_value(s->res, nrows, 0) != NULL;
    bad += sr_result_shard(s->res, nrows) != SR_EINVAL;
    int64_t affected = sr_result_affected(s->res);
    long seen = atomic_load(&nalloc);
    disarm();
    ck_assert_int_eq(seen, 0);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(affected, 0);
    ck_assert_int_eq(nrows, 900);
    ck_assert_int_eq(nulls, 900);
    ck_assert_uint_gt(total, 900 * 200);
    check_read_result(s->res, NSHARDS);
    sess_destroy(s);
    fprintf(stderr, "alloc: %-30s %5ld allocation points\n", "sr_result accessors", seen);
}
END_TEST

/* ---- PostgreSQL, when tests/env provides a cluster: positions ----
 *
 * A write records the session's position (read-your-writes). An allocation
 * failure while recording it cannot fail the write (it is done, and must not
 * be retried blindly), but it must not leave the session without a bound
 * either: reads that need one then go to the primary. Checked through the
 * position the read path would require (internal). */

static const char *pg_primary, *pg_replica;

static void *pg_make(void)
{
    sess_state *s = calloc(1, sizeof *s);
    sr_config *c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    char uri[512];
    ck_assert_int_eq(sr_config_add_shard(c, "all"), SR_OK);
    snprintf(uri, sizeof uri, "%s/shard0", pg_primary);
    ck_assert_int_eq(sr_config_add_node(c, "all", SR_PRIMARY, uri, 1), SR_OK);
    snprintf(uri, sizeof uri, "%s/shard0", pg_replica);
    ck_assert_int_eq(sr_config_add_node(c, "all", SR_REPLICA, uri, 1), SR_OK);
    ck_assert_msg(sr_router_open(c, &s->r) == SR_OK, "%s", sr_config_errmsg(c));
    sr_config_free(c);
    ck_assert_int_eq(sr_session_new(s->r, &s->s), SR_OK);
    /* Connections made, no write yet: the write under test is the session's first. */
    ck_assert_msg(sr_exec(s->s, sr_key_int(1), SR_READ, "SELECT 1", 0, NULL, NULL) == SR_OK, "%s",
                  sr_session_errmsg(s->s));
    ck_assert_int_eq(sr_exec_shard(s->s, 0, SR_WRITE, "SELECT 1", 0, NULL, NULL), SR_OK);
    sr_session_free(s->s);
    ck_assert_int_eq(sr_session_new(s->r, &s->s), SR_OK);
    s->s2 = SENTINEL;
    s->res = SENTINEL;
    return s;
}

static int pg_step(void *vs, int i)
{
    sess_state *s = vs;
    if (i == 0)
        return sr_exec(s->s, sr_key_int(1), SR_WRITE, "SELECT 1", 0, NULL, NULL);
    return sr_exec(s->s, sr_key_int(1), SR_READ, "SELECT 2", 0, NULL, &s->res);
}

static void pg_check(void *vs)
{
    sess_state *s = vs;
    char buf[SR_POSITION_MAX];
    const char *need = sr__positions_required(&s->s->positions, s->s->router, 0,
                                              SR_CONSISTENCY_READ_YOUR_WRITES, buf, sizeof buf);
    ck_assert_msg(need != NULL, "a write's position was lost and reads may go to any replica");
    ck_assert_str_eq(sr_result_value(s->res, 0, 0), "2");
    /* A position lost to the failure: no token (one without the write would let an
     * importer read stale), and the message says so; otherwise a token. */
    const char *t = sr_session_token(s->s);
    if (need == sr__position_unknown)
        ck_assert_msg(!t && (strstr(sr_session_errmsg(s->s), "lost") ||
                             strstr(sr_session_errmsg(s->s), "unknown")),
                      "%s", sr_session_errmsg(s->s));
    else
        ck_assert_ptr_nonnull(t);
}

START_TEST(postgres_positions)
{
    if (!pg_primary || !pg_replica || !sr_driver_find("postgresql")) {
        fprintf(stderr,
                "alloc: no PostgreSQL cluster in the environment (tests/env): positions not tested\n");
        return;
    }
    path pt = {
        .name = "PostgreSQL write + read (RYW)", .make = pg_make, .nsteps = 2, .step = pg_step,
        .check = pg_check, .destroy = sess_destroy, .on_fail = sess_on_fail
    };
    ck_assert_int_gt(run_path(&pt), 2);
}
END_TEST

/* The hook itself: an armed failure reaches the library (a test that could
 * not fail would prove nothing). */
START_TEST(hook_reaches_library)
{
    arm(1, false);
    sr_config *c = sr_config_new();
    long injected = disarm();
    ck_assert_int_eq(injected, 1);
    ck_assert_ptr_null(c);
    c = sr_config_new();
    ck_assert_ptr_nonnull(c);
    sr_config_free(c);
}
END_TEST

static Suite *alloc_suite(void)
{
    Suite *su = suite_create("alloc");
    TCase *tc = tcase_create("alloc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, hook_reaches_library);
    tcase_add_test(tc, config_building);
    tcase_add_test(tc, distributions_open);
    tcase_add_test(tc, config_parse);
    tcase_add_test(tc, router_open);
    tcase_add_test(tc, session_new);
    tcase_add_test(tc, exec_write_cold);
    tcase_add_test(tc, exec_write_warm);
    tcase_add_test(tc, traced_statements);
    tcase_add_test(tc, exec_read_cold);
    tcase_add_test(tc, exec_read_warm);
    tcase_add_test(tc, exec_opts_and_shard);
    tcase_add_test(tc, scatter_read);
    tcase_add_test(tc, scatter_write);
    tcase_add_test(tc, cursors_and_typed_values);
    tcase_add_test(tc, transaction_commit);
    tcase_add_test(tc, transaction_rollback_read_only);
    tcase_add_test(tc, session_tokens);
    tcase_add_test(tc, result_accessors);
    suite_add_tcase(su, tc);
    /* Its own case, so CK_RUN_CASE=postgres runs just it. */
    TCase *pg = tcase_create("postgres");
    tcase_add_test(pg, postgres_positions);
    suite_add_tcase(su, pg);
    return su;
}

int main(void)
{
    hook_sqlite();
    pg_primary = getenv("SR_PG_PRIMARY");
    pg_replica = getenv("SR_PG_REPLICA1");
    SRunner *sr = srunner_create(alloc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
