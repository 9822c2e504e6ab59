/*
 * The fake driver of the `route` unit suite (see route_driver.h). It only
 * knows what the test told each node; it talks to no server.
 */
#include "route_driver.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static route_node nodes[ROUTE_MAX_NODES];
static _Atomic int nnodes;

static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
static char trace[4096];

/* A connection remembers its node: the args the core passes are borrowed for connect only. */
struct sr_driver_conn {
    route_node *node;
    int lost; /* lose_after_write: every later call on it fails */
    /* A statement in steps ("fakestep"): */
    int stepping;   /* 1 between send() and the statement's end */
    int step_read;  /* the statement is a read */
    int rows_given; /* rows handed to next_row's builders so far */
    int rows_total; /* rows the read returns */
    sr_result_builder *named; /* the last builder given the columns */
};

static void trace_add(const route_node *n, char mark)
{
    pthread_mutex_lock(&trace_lock);
    size_t used = strlen(trace);
    if (used + strlen(n->name) + 3 < sizeof trace)
        snprintf(trace + used, sizeof trace - used, "%s%s%s", used ? " " : "", n->name,
                 mark == '!' ? "!" : mark == '~' ? "~" : mark == '?' ? "?" : "");
    pthread_mutex_unlock(&trace_lock);
}

const char *route_trace_take(char *buf, size_t len)
{
    pthread_mutex_lock(&trace_lock);
    snprintf(buf, len, "%s", trace);
    trace[0] = '\0';
    pthread_mutex_unlock(&trace_lock);
    return buf;
}

route_node *route_node_find(const char *name)
{
    int n = atomic_load(&nnodes);
    for (int i = 0; i < n; i++)
        if (strcmp(nodes[i].name, name) == 0)
            return &nodes[i];
    return NULL;
}

route_node *route_node_add(const char *name, sr_role role)
{
    if (strlen(name) >= sizeof nodes[0].name || route_node_find(name) ||
        atomic_load(&nnodes) == ROUTE_MAX_NODES) {
        fprintf(stderr, "route_node_add: bad, duplicate or one too many node '%s'\n", name);
        abort();
    }
    route_node *n = &nodes[atomic_load(&nnodes)];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    atomic_store(&n->role, (int)role);
    atomic_store(&n->catch_up_ms, -1);
    atomic_store(&n->rows, 1);
    atomic_fetch_add(&nnodes, 1);
    return n;
}

static void sleep_ns(int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/*
 * Hangs `ms` (< 0: for ever) but never past `deadline_ns` (0: none).
 * Returns 1 when the deadline cut the hang short.
 */
static int stall(int ms, int64_t deadline_ns)
{
    if (ms == 0)
        return 0;
    int64_t now = sr_clock_ns();
    int64_t until = ms < 0 ? INT64_MAX : now + (int64_t)ms * 1000000;
    if (deadline_ns > 0 && deadline_ns <= until) {
        sleep_ns(deadline_ns - now);
        return 1;
    }
    sleep_ns(until - now);
    return 0;
}

/* Consumes one failure of a counter (> 0: that many, < 0: all); 1 when this call fails. */
static int take_failure(_Atomic int *counter)
{
    int f = atomic_load(counter);
    for (;;) {
        if (f == 0)
            return 0;
        if (f < 0)
            return 1;
        if (atomic_compare_exchange_weak(counter, &f, f - 1))
            return 1;
    }
}

static int fake_connect(const sr_driver_connect_args *args, sr_driver_conn **out,
                        sr_driver_error *err)
{
    const char *name = args->uri->database ? args->uri->database : "";
    route_node *n = route_node_find(name);
    if (!n)
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0,
                                   "fake: no node '%s' (declare it with route_node_add)", name);
    atomic_fetch_add(&n->connect_calls, 1);
    int64_t deadline = args->connect_timeout_ms > 0
                           ? sr_clock_ns() + (int64_t)args->connect_timeout_ms * 1000000
                           : 0;
    if (stall(atomic_load(&n->connect_stall_ms), deadline))
        return sr_driver_error_set(err, SR_ETIMEOUT, 1, NULL, 0,
                                   "fake: connect to %s timed out after %d ms", n->name,
                                   args->connect_timeout_ms);
    if (atomic_load(&n->down))
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0, "fake: %s is down", n->name);
    if (atomic_load(&n->check_role) && (int)args->role != atomic_load(&n->role))
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0,
                                   "fake: %s is configured as a %s but is not", n->name,
                                   args->role == SR_PRIMARY ? "primary" : "replica");
    if (take_failure(&n->fail_connects))
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0, "fake: %s refused the connection",
                                   n->name);
    sr_driver_conn *c = calloc(1, sizeof *c);
    if (!c)
        return sr_driver_error_set(err, SR_ENOMEM, 1, NULL, 0, "fake: out of memory");
    c->node = n;
    atomic_fetch_add(&n->connects, 1);
    *out = c;
    return SR_OK;
}

static void fake_close(sr_driver_conn *c)
{
    if (!c)
        return;
    atomic_fetch_add(&c->node->closes, 1);
    free(c);
}

static int is_read(const char *sql)
{
    while (*sql == ' ' || *sql == '\n' || *sql == '\t')
        sql++;
    return strncasecmp(sql, "SELECT", 6) == 0;
}

/* What every statement goes through first: the counters, the stall and the failure knobs. */
static int fake_prelude(route_node *n, int64_t deadline_ns, sr_driver_error *err)
{
    atomic_fetch_add(&n->execs, 1);
    atomic_store(&n->last_exec_deadline_ns, deadline_ns);
    if (stall(atomic_load(&n->stall_ms), deadline_ns)) {
        trace_add(n, '~');
        return sr_driver_error_set(err, SR_ETIMEOUT, 1, "57014", 0,
                                   "fake: statement on %s timed out", n->name);
    }
    if (atomic_load(&n->down))
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0, "fake: %s is down", n->name);
    if (take_failure(&n->fail_execs)) {
        trace_add(n, '!');
        if (atomic_load(&n->fail_kind) == ROUTE_FAIL_SQL)
            return sr_driver_error_set(err, SR_EQUERY, 0, "42P01", 0,
                                       "fake: relation \"t\" does not exist on %s", n->name);
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0,
                                   "fake: connection to %s lost", n->name);
    }
    return SR_OK;
}

/* The statement itself, after the prelude. */
static int fake_run(route_node *n, const char *sql, sr_result_builder *rb, sr_driver_error *err)
{
    if (is_read(sql)) {
        const char *col = "node";
        if (sr_result_builder_columns(rb, 1, &col) != SR_OK ||
            sr_result_builder_value(rb, n->name, strlen(n->name)) != SR_OK)
            return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "fake: out of memory");
    } else {
        atomic_fetch_add(&n->position, 1);
        sr_result_builder_affected(rb, 1);
    }
    atomic_fetch_add(&n->exec_ok, 1);
    trace_add(n, 0);
    return SR_OK;
}

static int fake_exec(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                     int64_t deadline_ns, sr_result_builder *rb, sr_driver_error *err)
{
    (void)nparams, (void)params;
    int rc = fake_prelude(c->node, deadline_ns, err);
    return rc != SR_OK ? rc : fake_run(c->node, sql, rb, err);
}

static int fake_begin(sr_driver_conn *c, int read_only, int64_t deadline_ns, sr_driver_error *err)
{
    (void)deadline_ns, (void)err;
    atomic_fetch_add(&c->node->begins, 1);
    if (read_only)
        atomic_fetch_add(&c->node->read_only_begins, 1);
    return SR_OK;
}

static int fake_commit(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    (void)deadline_ns, (void)err;
    atomic_fetch_add(&c->node->commits, 1);
    return SR_OK;
}

static int fake_rollback(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    (void)deadline_ns, (void)err;
    atomic_fetch_add(&c->node->rollbacks, 1);
    return SR_OK;
}

static int fake_ping(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    (void)deadline_ns;
    atomic_fetch_add(&c->node->pings, 1);
    if (atomic_load(&c->node->down))
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0, "fake: %s is down",
                                   c->node->name);
    return SR_OK;
}

static int fake_server_role(sr_driver_conn *c, int64_t deadline_ns, sr_role *out,
                            sr_driver_error *err)
{
    (void)deadline_ns;
    if (atomic_load(&c->node->down))
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0, "fake: %s is down",
                                   c->node->name);
    *out = (sr_role)atomic_load(&c->node->role);
    return SR_OK;
}

/* ---- positions: decimal integers ---- */

static int parse_pos(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -1;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > INT64_MAX / 10 - 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

static int format_pos(int64_t v, char *buf, size_t len, sr_driver_error *err)
{
    int w = snprintf(buf, len, "%lld", (long long)v);
    if (w < 0 || (size_t)w >= len)
        return err ? sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "fake: buffer too small")
                   : SR_EINVAL;
    return SR_OK;
}

static int fake_write_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t len,
                               sr_driver_error *err)
{
    (void)deadline_ns;
    atomic_fetch_add(&c->node->write_position_reads, 1);
    if (c->lost)
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0, "fake: connection lost");
    if (atomic_load(&c->node->fail_write_position))
        return sr_driver_error_set(err, SR_EQUERY, 0, NULL, 0, "fake: %s cannot tell its position",
                                   c->node->name);
    return format_pos(atomic_load(&c->node->position), buf, len, err);
}

static int fake_replay_position(sr_driver_conn *c, int64_t deadline_ns, char *buf, size_t len,
                                sr_driver_error *err)
{
    (void)deadline_ns;
    atomic_fetch_add(&c->node->position_reads, 1);
    return format_pos(atomic_load(&c->node->position), buf, len, err);
}

static int fake_has_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns,
                             int *out, sr_driver_error *err)
{
    (void)deadline_ns;
    int64_t want;
    if (parse_pos(position, &want))
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "fake: bad position");
    atomic_fetch_add(&c->node->position_reads, 1);
    *out = atomic_load(&c->node->position) >= want;
    return SR_OK;
}

static int fake_replica_lag_ms(sr_driver_conn *c, int64_t deadline_ns, int64_t *out_ms,
                               sr_driver_error *err)
{
    (void)deadline_ns, (void)err;
    atomic_fetch_add(&c->node->lag_reads, 1);
    *out_ms = atomic_load(&c->node->lag_ms);
    return SR_OK;
}

static int fake_position_covers(const char *have, const char *want)
{
    int64_t h, w;
    if (parse_pos(have, &h) || parse_pos(want, &w))
        return SR_EINVAL;
    return h >= w;
}

static int fake_position_merge(const char *a, const char *b, char *buf, size_t len)
{
    int64_t x, y;
    if (parse_pos(a, &x) || parse_pos(b, &y))
        return SR_EINVAL;
    return format_pos(x > y ? x : y, buf, len, NULL);
}

static int fake_wait_replayed(sr_driver_conn *c, const char *position, int64_t deadline_ns,
                              int *out, sr_driver_error *err)
{
    route_node *n = c->node;
    int64_t want;
    if (parse_pos(position, &want))
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "fake: bad position");
    atomic_fetch_add(&n->waits, 1);
    atomic_store(&n->last_wait_deadline_ns, deadline_ns);
    *out = 0;
    if (atomic_load(&n->position) >= want) {
        *out = 1;
        return SR_OK;
    }
    int ms = atomic_load(&n->catch_up_ms);
    if (stall(ms < 0 ? -1 : ms, deadline_ns))
        return SR_OK; /* the deadline came first: not replayed */
    /* Replication caught up with the position waited for. */
    int64_t have = atomic_load(&n->position);
    while (have < want && !atomic_compare_exchange_weak(&n->position, &have, want))
        ;
    *out = 1;
    return SR_OK;
}

/*
 * The "fakeat" registration's exec_at: the same statement as exec, with the
 * replica's check or the primary's write position in its one call.
 */
static int fake_exec_at(sr_driver_conn *c, const char *sql, int nparams, const char *const *params,
                        const char *need, int64_t deadline_ns, sr_result_builder *rb, char *pos,
                        size_t poslen, int *stale, sr_driver_error *err)
{
    (void)nparams, (void)params;
    route_node *n = c->node;
    *stale = 0;
    pos[0] = '\0';
    atomic_fetch_add(&n->exec_ats, 1);
    int64_t want = 0;
    if (need && parse_pos(need, &want))
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "fake: bad position");
    int rc = fake_prelude(n, deadline_ns, err);
    if (rc != SR_OK)
        return rc;
    if (need) {
        int64_t have = atomic_load(&n->position);
        if (format_pos(have, pos, poslen, err) != SR_OK)
            return err->status;
        if (have < want) {
            *stale = 1;
            atomic_fetch_add(&n->stale_checks, 1);
            trace_add(n, '?');
            return SR_OK;
        }
        return fake_run(n, sql, rb, err);
    }
    rc = fake_run(n, sql, rb, err);
    if (rc == SR_OK && take_failure(&n->lose_after_write)) {
        sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0,
                            "fake: connection to %s lost after the write", n->name);
        c->lost = 1;
        return SR_OK;
    }
    /* fail_write_position: the exchange brought no position back (""): the core asks. */
    if (rc == SR_OK && !atomic_load(&n->fail_write_position) &&
        format_pos(atomic_load(&n->position), pos, poslen, err) != SR_OK)
        return err->status;
    return rc;
}

/* ---- steps (driver ABI 6, scheme "fakestep"): no socket, work done in the calls ---- */

static int fake_socket(sr_driver_conn *c)
{
    (void)c;
    return -1;
}

static int fake_send(sr_driver_conn *c, const char *sql, int nparams, const sr_value *params,
                     int64_t deadline_ns, int *want, sr_driver_error *err)
{
    (void)nparams, (void)params;
    *want = 0;
    atomic_fetch_add(&c->node->sends, 1);
    int rc = fake_prelude(c->node, deadline_ns, err);
    if (rc != SR_OK)
        return rc;
    c->stepping = 1;
    c->step_read = is_read(sql);
    c->rows_given = 0;
    c->rows_total = c->step_read ? atomic_load(&c->node->rows) : 0;
    c->named = NULL;
    return SR_OK;
}

static int fake_next_row(sr_driver_conn *c, sr_result_builder *rb, int64_t deadline_ns, int *want,
                         sr_driver_error *err)
{
    (void)deadline_ns;
    route_node *n = c->node;
    *want = 0;
    if (!c->stepping)
        return sr_driver_error_set(err, SR_EINVAL, 0, NULL, 0, "fake: next_row without send");
    int fail_after = atomic_load(&n->fail_after_rows);
    if (fail_after > 0 && c->rows_given >= fail_after) {
        c->stepping = 0;
        trace_add(n, '!');
        return sr_driver_error_set(err, SR_ECONNECT, 1, "08006", 0,
                                   "fake: connection to %s lost after %d rows", n->name,
                                   c->rows_given);
    }
    if (c->step_read && c->named != rb) {
        /* A builder not yet given the columns: they come from the driver once per
         * statement, so only the first builder (rows_given 0) takes them here. */
        const char *col = "node";
        sr_type t = SR_TYPE_TEXT;
        if (c->rows_given == 0 && (sr_result_builder_columns(rb, 1, &col) != SR_OK ||
                                   sr_result_builder_types(rb, &t) != SR_OK))
            return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "fake: out of memory");
        c->named = rb;
    }
    if (c->rows_given < c->rows_total) {
        if (sr_result_builder_value(rb, n->name, strlen(n->name)) != SR_OK)
            return sr_driver_error_set(err, SR_ENOMEM, 0, NULL, 0, "fake: out of memory");
        c->rows_given++;
        return 1;
    }
    c->stepping = 0;
    if (!c->step_read) {
        atomic_fetch_add(&n->position, 1);
        sr_result_builder_affected(rb, 1);
    }
    atomic_fetch_add(&n->exec_ok, 1);
    trace_add(n, 0);
    return 0;
}

static int fake_cancel(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    (void)deadline_ns, (void)err;
    atomic_fetch_add(&c->node->cancels, 1);
    c->stepping = 0;
    return SR_OK;
}

const sr_driver *route_driver(void)
{
    static const char *const schemes[] = {"fake", NULL};
    static const sr_driver drv = {
        .abi_version = SR_DRIVER_ABI_VERSION,
        .name = "fake",
        .schemes = schemes,
        .dialect = SR_SQL_GENERIC,
        .connect = fake_connect,
        .close = fake_close,
        .exec = fake_exec,
        .begin = fake_begin,
        .commit = fake_commit,
        .rollback = fake_rollback,
        .ping = fake_ping,
        .server_role = fake_server_role,
        .write_position = fake_write_position,
        .has_replayed = fake_has_replayed,
        .replica_lag_ms = fake_replica_lag_ms,
        .replay_position = fake_replay_position,
        .position_covers = fake_position_covers,
        .position_merge = fake_position_merge,
        .wait_replayed = fake_wait_replayed,
        /* no exec_at: it stands for a driver without one (before ABI 5) */
    };
    return &drv;
}

/* In the "fake4" registration's exec_at slot: an ABI 4 driver has no such slot, so the core
 * must never call what happens to lie there. */
static int exec_at_of_an_abi4_driver(sr_driver_conn *c, const char *sql, int nparams,
                                     const char *const *params, const char *need,
                                     int64_t deadline_ns, sr_result_builder *rb, char *pos,
                                     size_t poslen, int *stale, sr_driver_error *err)
{
    (void)c, (void)sql, (void)nparams, (void)params, (void)need, (void)deadline_ns, (void)rb;
    (void)pos, (void)poslen, (void)stale, (void)err;
    fprintf(stderr, "route_driver: the core called exec_at of a driver of ABI 4\n");
    abort();
}

const sr_driver *route_driver_abi4(void)
{
    static const char *const schemes[] = {"fake4", NULL};
    static sr_driver drv;
    if (!drv.abi_version) {
        drv = *route_driver();
        drv.abi_version = 4;
        drv.name = "fake4";
        drv.schemes = schemes;
        drv.exec_at = exec_at_of_an_abi4_driver;
    }
    return &drv;
}

const sr_driver *route_driver_at(void)
{
    static const char *const schemes[] = {"fakeat", NULL};
    static sr_driver drv;
    if (!drv.abi_version) {
        drv = *route_driver();
        drv.name = "fakeat";
        drv.schemes = schemes;
        drv.exec_at = fake_exec_at;
    }
    return &drv;
}

const sr_driver *route_driver_steps(void)
{
    static const char *const schemes[] = {"fakestep", NULL};
    static sr_driver drv;
    if (!drv.abi_version) {
        drv = *route_driver();
        drv.name = "fakestep";
        drv.schemes = schemes;
        drv.socket = fake_socket;
        drv.send = fake_send;
        drv.next_row = fake_next_row;
        drv.cancel = fake_cancel;
    }
    return &drv;
}

void route_driver_reset(void)
{
    static int registered;
    if (!registered) {
        if (sr_driver_register(route_driver()) != SR_OK ||
            sr_driver_register(route_driver_at()) != SR_OK ||
            sr_driver_register(route_driver_abi4()) != SR_OK ||
            sr_driver_register(route_driver_steps()) != SR_OK) {
            fprintf(stderr, "route_driver_reset: sr_driver_register refused the fake driver\n");
            abort();
        }
        registered = 1;
    }
    atomic_store(&nnodes, 0);
    memset(nodes, 0, sizeof nodes);
    pthread_mutex_lock(&trace_lock);
    trace[0] = '\0';
    pthread_mutex_unlock(&trace_lock);
}
