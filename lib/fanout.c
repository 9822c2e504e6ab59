/*
 * A statement on many shards from one thread (fanout.h). Every shard's
 * statement is sent before any answer is read, so the shards work at the
 * same time and the wall time is the slowest shard's, not the sum. Rows
 * are read as they come, into a batch per shard that the consumer (a
 * merger) empties; a shard whose batch is full is not read until it is
 * emptied, so a cursor's memory is bounded by shards x batch whatever the
 * result's size, and the server waits behind its socket meanwhile.
 */
#include "fanout.h"

#include "events.h"
#include "exec.h"
#include "positions.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

enum { FO_RUNNING, FO_DONE, FO_FAILED };

typedef struct fo_shard {
    int shard;
    int state;
    bool whole_path;        /* no steps: `whole` from the one-shard path (exec.c) */
    bool write;
    bool handed;            /* a row of it was handed out: it can no longer be retried */
    bool retried;
    uint64_t exclude;       /* nodes a retry must not use (sr__node_bit) */
    sr_node *node;
    sr_driver_conn *conn;
    bool probe;
    bool note_read;         /* a monotonic read: remember where it read */
    bool record_write;      /* a write whose position the session keeps */
    int want;               /* poll() events the driver waits for; 0: call next_row */
    sr_result_builder rb;   /* the batch: rows read and not yet handed out */
    int next;               /* next row of the batch (or of `whole`) to hand out */
    sr_result *whole;
    int rc;                 /* the failure, when FO_FAILED */
    sr_read_tries tries;    /* what the read learnt about the shard's nodes (for its event) */
    int max_lag_ms;
    sr_reason why;
    char *text;             /* the one-shard path's message for a failure, or NULL */
    char sqlstate[6];
} fo_shard;

struct sr_fanout {
    sr_session *s;
    sr_topo *r;
    const sr_stmt *st;           /* while the caller's statement is valid: a read may be retried */
    sr_intent intent;
    const sr_read_opts *ropts;
    size_t batch_rows;
    bool skip_failed;
    int n;
    struct pollfd *pfds; /* n entries, rebuilt per wait */
    int *pidx;           /* pfds[k] belongs to shard pidx[k] */
    char *report_sql;    /* a copy of the SQL when this statement's events are reported */
    int64_t start_ns;
    bool started;        /* every shard was sent (or failed): counted and reported at the end */
    bool scatter;        /* over every shard (not a one-key cursor): the scatter counters */
    fo_shard sh[];
};

static void fail_shard(sr_fanout *f, fo_shard *sh, int rc, const sr_driver_error *e)
{
    sr__node_step_end(sh->node, sh->write, rc);
    sr__node_release(f->r, sh->node, sh->conn, rc, e, sh->probe);
    sr__reason_driver(&sh->why, sh->node, sh->shard, e, NULL);
    memcpy(sh->sqlstate, e->sqlstate, sizeof sh->sqlstate);
    sh->conn = NULL;
    sh->rc = rc;
    sh->state = FO_FAILED;
}

static void finish_shard(sr_fanout *f, fo_shard *sh, int64_t deadline)
{
    sr_topo *r = f->r;
    sr_session *s = f->s;
    sr_driver_error e;
    sr__driver_error_clear(&e);
    sr__result_sync_rows(sh->rb.res);
    sr__node_step_end(sh->node, sh->write, SR_OK);
    if (sh->note_read)
        sr__positions_note_read(&s->positions, r, sh->node, sh->conn, deadline);
    if (sh->record_write)
        sr__positions_record_write(&s->positions, r, sh->node, sh->conn, deadline, "");
    sr__node_release(r, sh->node, sh->conn, SR_OK, &e, sh->probe);
    sh->conn = NULL;
    sh->state = FO_DONE;
}

/* Finds the shard's node as a write or a read would, and sends; failures stay on the shard. */
static void send_on_shard(sr_fanout *f, fo_shard *sh, bool write, const sr_read_opts *ropts,
                          const sr_stmt *st, int64_t deadline)
{
    sr_session *s = f->s;
    sr_topo *r = f->r;
    sr_driver_error *e = &sh->why.err;
    sr__driver_error_clear(e);
    int rc;
    if (write) {
        sh->node = &r->shards[sh->shard].nodes[0];
        rc = sr__node_acquire_primary(r, sh->shard, true, deadline, &sh->conn, &sh->probe,
                                      &sh->why);
        sh->record_write = sr__mode_uses_positions(s->mode) &&
                           sr__shard_positions_driver(r, sh->shard);
    } else {
        char needbuf[SR_POSITION_MAX];
        sr_read_plan plan;
        sr__session_read_plan(s, ropts, sh->shard, &plan, needbuf, sizeof needbuf);
        sr_read_tries tries = {.exclude = sh->exclude};
        sh->max_lag_ms = plan.max_lag_ms;
        for (;;) {
            const char *check = NULL;
            rc = sr__read_acquire(r, sh->shard, &plan, &tries, deadline, &sh->node, &sh->conn,
                                  &sh->probe, &check, &sh->why);
            if (rc != SR_OK || !check)
                break;
            /* Steps carry no check: the replica's position is asked first. */
            bool applied = false;
            sr__driver_error_clear(e);
            rc = sr__node_has_applied(sh->node, sh->conn, check, plan.written_ns, deadline,
                                      &applied, e);
            if (rc != SR_OK) {
                sr__node_release(r, sh->node, sh->conn, rc, e, sh->probe);
                sr__reason_driver(&sh->why, sh->node, sh->shard, e, NULL);
                break;
            }
            tries.checked |= sr__node_bit(sh->node);
            if (applied)
                break;
            sr__node_release(r, sh->node, sh->conn, SR_OK, e, sh->probe);
            tries.stale |= sr__node_bit(sh->node);
            tries.missed = true;
        }
        sh->note_read = rc == SR_OK && plan.mode == SR_CONSISTENCY_MONOTONIC;
        if (rc == SR_OK)
            sr__read_count_primary(r, sh->shard, sh->node, &tries);
        sh->tries = tries;
    }
    if (rc != SR_OK) {
        sh->conn = NULL;
        sh->rc = rc;
        sh->state = FO_FAILED;
        memcpy(sh->sqlstate, sh->why.err.sqlstate, sizeof sh->sqlstate);
        return;
    }
    if (!sr_driver_has_steps(sh->node->b->driver)) {
        /* A replica of another driver than the primary's: the one-shard path runs it. */
        sr__driver_error_clear(e);
        sr__node_release(r, sh->node, sh->conn, SR_OK, e, sh->probe);
        sh->conn = NULL;
        sh->whole_path = true;
        return;
    }
    sr__driver_error_clear(e);
    sr_stmt routed = *st;
    routed.write = write;
    rc = sr__node_send(sh->node, sh->conn, &routed, deadline, &sh->want, e);
    if (rc != SR_OK) {
        /* sr__node_send counted the statement's end already. */
        sr__node_release(r, sh->node, sh->conn, rc, e, sh->probe);
        if (!write && !sh->retried && e->transient && rc != SR_ETIMEOUT &&
            sh->node->role != SR_PRIMARY && sr_clock_ns() < deadline) {
            /* A pooled connection found dead: once more elsewhere, as in retry_read. */
            sh->exclude |= sr__node_bit(sh->node);
            sh->retried = true;
            sh->conn = NULL;
            send_on_shard(f, sh, write, ropts, st, deadline);
            return;
        }
        sr__reason_driver(&sh->why, sh->node, sh->shard, e, NULL);
        memcpy(sh->sqlstate, e->sqlstate, sizeof sh->sqlstate);
        sh->conn = NULL;
        sh->rc = rc;
        sh->state = FO_FAILED;
        return;
    }
    sh->state = FO_RUNNING;
}

/* A shard the one-shard path runs whole (no steps); its message is kept as text. */
static void run_whole(sr_fanout *f, fo_shard *sh, sr_intent intent, const sr_read_opts *ropts,
                      const sr_stmt *st)
{
    sr_session *s = f->s;
    /* Reported (or not) as the whole statement is: one sampling decision per statement. */
    int rc = sr__exec_on_shard(s, sh->shard, intent, ropts, st, f->report_sql != NULL, &sh->whole);
    if (rc == SR_OK) {
        sh->state = FO_DONE;
        return;
    }
    sh->rc = rc;
    sh->state = FO_FAILED;
    sh->text = sr_strdup(sr_session_errmsg(s));
    memcpy(sh->sqlstate, sr_session_sqlstate(s), sizeof sh->sqlstate);
    sh->sqlstate[5] = '\0';
    sr__session_clear_error(s);
}

int sr__fanout_start(sr_session *s, const int *shards, int n, sr_intent intent,
                     const sr_read_opts *ropts, const sr_stmt *st, size_t batch_rows,
                     int64_t deadline, sr_fanout **out)
{
    sr_topo *r = s->router;
    if (!shards)
        n = r->nshards;
    sr_fanout *f = calloc(1, sizeof *f + (size_t)n * sizeof(fo_shard));
    if (!f)
        return SR_ENOMEM;
    f->s = s;
    f->r = r;
    f->st = st;
    f->intent = intent;
    f->ropts = ropts;
    f->batch_rows = batch_rows;
    f->n = n;
    f->scatter = shards == NULL;
    if (sr__event_sampled(r)) {
        /* Kept for the events, which come when the statement ends (a cursor: at its close). */
        f->report_sql = sr_strdup(st->sql);
        f->start_ns = sr_clock_ns();
    }
    f->pfds = malloc((size_t)n * sizeof *f->pfds);
    f->pidx = malloc((size_t)n * sizeof *f->pidx);
    bool oom = !f->pfds || !f->pidx;
    for (int i = 0; i < n; i++) {
        fo_shard *sh = &f->sh[i];
        sh->shard = shards ? shards[i] : i;
        sh->state = FO_DONE;
        if (!oom && sr__result_builder_init(&sh->rb, sh->shard) != SR_OK)
            oom = true;
    }
    if (oom) {
        sr__fanout_free(f);
        return SR_ENOMEM;
    }
    /* Everything that can be sent is sent first; the whole-path shards run while the
     * servers of the others work. */
    for (int i = 0; i < n; i++) {
        fo_shard *sh = &f->sh[i];
        const sr_node *primary = &r->shards[sh->shard].nodes[0];
        sh->write = sr__exec_is_write(r, sh->shard, intent, st->sql);
        if (!sr_driver_has_steps(primary->b->driver)) {
            sh->whole_path = true;
            continue;
        }
        send_on_shard(f, sh, sh->write, ropts, st, deadline);
    }
    for (int i = 0; i < n; i++)
        if (f->sh[i].whole_path)
            run_whole(f, &f->sh[i], intent, ropts, st);
    f->started = true;
    *out = f;
    return SR_OK;
}

static bool batch_full(const sr_fanout *f, const fo_shard *sh)
{
    return f->batch_rows && (size_t)sh->rb.res->nrows >= f->batch_rows;
}

static void send_on_shard(sr_fanout *f, fo_shard *sh, bool write, const sr_read_opts *ropts,
                          const sr_stmt *st, int64_t deadline);

/*
 * A read whose node became unreachable before any of its rows was handed
 * out is sent once more to another node of its shard within the same
 * deadline, as a one-shard read is (exec.c); an SQL error would fail the
 * same way anywhere, and a timeout has used the deadline up.
 */
static bool retry_read(sr_fanout *f, fo_shard *sh, int rc, const sr_driver_error *e,
                       int64_t deadline)
{
    if (!f->st || sh->write || sh->retried || sh->handed || !e->transient ||
        rc == SR_ETIMEOUT || sh->node->role == SR_PRIMARY || sr_clock_ns() >= deadline)
        return false;
    sr__log(f->r, SR_LOG_INFO, "read on shard '%s' node %s failed (%s); retrying elsewhere",
            f->r->shards[sh->shard].name, sh->node->b->uri->redacted, e->message);
    sr__node_step_end(sh->node, sh->write, rc);
    sr__node_release(f->r, sh->node, sh->conn, rc, e, sh->probe);
    sh->conn = NULL;
    sh->exclude |= sr__node_bit(sh->node);
    sh->retried = true;
    sh->want = 0;
    /* A fresh builder: the next node gives the columns again. */
    sr__result_builder_discard(&sh->rb);
    if (sr__result_builder_init(&sh->rb, sh->shard) != SR_OK) {
        sh->rc = sr__reason_driver(&sh->why, sh->node, sh->shard,
                                   &(sr_driver_error){.status = SR_ENOMEM, .message = "out of memory"},
                                   NULL);
        sh->state = FO_FAILED;
        return true;
    }
    send_on_shard(f, sh, false, f->ropts, f->st, deadline);
    return true;
}

/* Calls next_row on a shard until it must wait, its batch is full, or it ends. */
static void step_shard(sr_fanout *f, fo_shard *sh, int64_t deadline)
{
    sr_driver_error e;
    while (sh->state == FO_RUNNING && !sh->want && !batch_full(f, sh)) {
        sr__driver_error_clear(&e);
        int want = 0;
        int rc = sr__node_next_row(sh->node, sh->conn, &sh->rb, deadline, &want, &e);
        if (sh->rb.failed) {
            /* Our memory, not the node's fault: the connection is kept if it can be made
             * idle again (the node's health then sees no failure). */
            bool idle = rc < 0                   ? !e.transient
                        : rc == 0 && want == 0 ? true
                                               : sr__node_cancel(sh->node, sh->conn, deadline);
            sr_driver_error_set(&e, SR_ENOMEM, !idle, NULL, 0, "out of memory reading rows");
            fail_shard(f, sh, SR_ENOMEM, &e);
        } else if (rc > 0) {
            sr__result_sync_rows(sh->rb.res);
        } else if (rc < 0) {
            if (!retry_read(f, sh, rc, &e, deadline))
                fail_shard(f, sh, rc, &e);
        } else if (!want) {
            finish_shard(f, sh, deadline);
        } else {
            sh->want = want;
        }
    }
}

static void time_out_waiting(sr_fanout *f, int64_t deadline)
{
    (void)deadline;
    sr_driver_error e;
    for (int i = 0; i < f->n; i++) {
        fo_shard *sh = &f->sh[i];
        if (sh->state != FO_RUNNING || !sh->want)
            continue;
        sr_driver_error_set(&e, SR_ETIMEOUT, 1, NULL, 0,
                            "no answer within the statement deadline (statement_timeout_ms "
                            "= %d)",
                            f->r->opts.statement_timeout_ms);
        fail_shard(f, sh, SR_ETIMEOUT, &e);
    }
}

/*
 * Reads every running shard until `target` has a row or ended (target < 0:
 * until every shard ended), waiting on all their sockets at once. A wait
 * past `deadline` fails the shards still waiting with SR_ETIMEOUT.
 */
static void pump(sr_fanout *f, int target, int64_t deadline)
{
    for (;;) {
        bool running = false;
        for (int i = 0; i < f->n; i++) {
            step_shard(f, &f->sh[i], deadline);
            running |= f->sh[i].state == FO_RUNNING;
        }
        if (target >= 0) {
            const fo_shard *t = &f->sh[target];
            if (t->state != FO_RUNNING || t->next < t->rb.res->nrows)
                return;
        } else if (!running) {
            return;
        }
        int np = 0;
        for (int i = 0; i < f->n; i++) {
            fo_shard *sh = &f->sh[i];
            if (sh->state != FO_RUNNING || !sh->want || batch_full(f, sh))
                continue;
            int fd = sr__node_socket(sh->node, sh->conn);
            if (fd < 0) {
                sh->want = 0; /* nothing to wait on: call it again */
                continue;
            }
            f->pfds[np].fd = fd;
            f->pfds[np].events = (short)sh->want;
            f->pfds[np].revents = 0;
            f->pidx[np++] = i;
        }
        if (np == 0)
            continue; /* a shard without a socket asked to be called again */
        int64_t now = sr_clock_ns();
        if (deadline > 0 && now >= deadline) {
            time_out_waiting(f, deadline);
            continue;
        }
        int ready = poll(f->pfds, (nfds_t)np, sr_deadline_remaining_ms(deadline));
        if (ready < 0 && errno != EINTR) {
            sr_driver_error e;
            sr_driver_error_set(&e, SR_EDRIVER, 1, NULL, 0, "poll() failed (errno %d)", errno);
            for (int k = 0; k < np; k++)
                fail_shard(f, &f->sh[f->pidx[k]], SR_EDRIVER, &e);
            continue;
        }
        for (int k = 0; k < np && ready > 0; k++)
            if (f->pfds[k].revents)
                f->sh[f->pidx[k]].want = 0;
    }
}

void sr__fanout_run(sr_fanout *f, int64_t deadline) { pump(f, -1, deadline); }

int sr__fanout_pull(sr_fanout *f, int i, int64_t deadline, sr_row_ref *out)
{
    fo_shard *sh = &f->sh[i];
    const sr_result *rows = sh->whole ? sh->whole : sh->rb.res;
    for (;;) {
        if (sh->next < rows->nrows) {
            out->res = rows;
            out->row = sh->next++;
            sh->handed = true;
            return 1;
        }
        if (sh->state == FO_FAILED)
            return f->skip_failed ? 0 : sh->rc;
        out->res = rows; /* the columns of an empty shard */
        out->row = -1;
        if (sh->state == FO_DONE)
            return 0;
        sr__result_clear_rows(sh->rb.res);
        sh->next = 0;
        pump(f, i, deadline);
    }
}

void sr__fanout_skip_failed(sr_fanout *f) { f->skip_failed = true; }

void sr__fanout_forget_stmt(sr_fanout *f)
{
    f->st = NULL;
    f->ropts = NULL;
}

int sr__fanout_count(const sr_fanout *f) { return f->n; }

int sr__fanout_shard(const sr_fanout *f, int i) { return f->sh[i].shard; }

int sr__fanout_failed(const sr_fanout *f, int i, const sr_reason **why, const char **what,
                      const char **text, const char **sqlstate)
{
    const fo_shard *sh = &f->sh[i];
    if (sh->state != FO_FAILED)
        return SR_OK;
    *what = sh->write ? "write" : "read";
    if (sh->whole_path) {
        /* The one-shard path's message (lost only when copying it ran out of memory). */
        *why = NULL;
        *text = sh->text ? sh->text : "out of memory";
    } else {
        *why = &sh->why;
        *text = NULL;
    }
    *sqlstate = sh->sqlstate;
    return sh->rc;
}

int64_t sr__fanout_affected(const sr_fanout *f)
{
    int64_t sum = 0;
    for (int i = 0; i < f->n; i++) {
        const fo_shard *sh = &f->sh[i];
        if (sh->state == FO_DONE)
            sum += sh->whole ? sh->whole->affected : sh->rb.res->affected;
    }
    return sum;
}

const sr_result *sr__fanout_result(const sr_fanout *f, int i)
{
    const fo_shard *sh = &f->sh[i];
    if (sh->state != FO_DONE)
        return NULL;
    return sh->whole ? sh->whole : sh->rb.res;
}

/* The event of one shard's part of a reported scatter statement. */
static void report_part(sr_fanout *f, const fo_shard *sh)
{
    sr_route_record rec;
    memset(&rec, 0, sizeof rec);
    rec.start_ns = f->start_ns;
    rec.shard = sh->shard;
    rec.node = sh->node;
    rec.write = sh->write;
    rec.retries = sh->retried;
    rec.max_lag_ms = sh->max_lag_ms;
    rec.tries = sh->tries;
    bool failed = sh->state == FO_FAILED;
    sr__event_statement(f->r, &rec, f->report_sql, failed ? sh->rc : SR_OK,
                        failed ? sh->sqlstate : "");
}

void sr__fanout_free(sr_fanout *f)
{
    if (!f)
        return;
    int64_t deadline = sr__statement_deadline(f->r);
    int nfailed = 0;
    for (int i = 0; i < f->n; i++) {
        fo_shard *sh = &f->sh[i];
        nfailed += sh->state == FO_FAILED;
        if (sh->state == FO_RUNNING) {
            /* Stopped early (a LIMIT reached, a cursor closed): idle again, or closed. */
            sr_driver_error e;
            sr__driver_error_clear(&e);
            e.transient = !sr__node_cancel(sh->node, sh->conn, deadline);
            sr__node_step_end(sh->node, sh->write, SR_OK);
            sr__node_release(f->r, sh->node, sh->conn, SR_OK, &e, sh->probe);
        }
        sr__result_builder_discard(&sh->rb);
        sr_result_free(sh->whole);
        free(sh->text);
    }
    /* Once every connection is back (a callback may run statements on those nodes):
     * the events of a reported statement's parts (the one-shard path reported its own),
     * and the scatter counters. A statement that never started is neither. */
    for (int i = 0; f->started && f->report_sql && i < f->n; i++)
        if (!f->sh[i].whole_path)
            report_part(f, &f->sh[i]);
    if (f->started && f->scatter) {
        sr_scatter_counters *sc = f->r->scatter;
        sr__count(&sc->statements);
        atomic_fetch_add_explicit(&sc->shards, (uint64_t)f->n, memory_order_relaxed);
        atomic_fetch_add_explicit(&sc->failed_shards, (uint64_t)nfailed, memory_order_relaxed);
        if (nfailed > 0 && nfailed < f->n)
            sr__count(&sc->partial);
    }
    free(f->report_sql);
    free(f->pfds);
    free(f->pidx);
    free(f);
}
