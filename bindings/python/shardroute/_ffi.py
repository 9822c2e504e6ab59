"""The C library through cffi's ABI mode: the public API's declarations, and
where the shared library is found.

Only ``include/shardroute.h`` is described here (nothing of ``lib/``). The
declarations are checked against the header by the test suite
(``tests/test_api.py``), so a change of the C API that is not made here too
fails a test rather than corrupting memory.

cffi releases the GIL around every call into the library, so a blocking
statement on one Python thread lets the others run.
"""

from __future__ import annotations

import ctypes.util
import os

import cffi

CDEF = r"""
typedef enum sr_status {
    SR_OK = 0, SR_EINVAL = -1, SR_ENOMEM = -2, SR_ENOSHARD = -3, SR_EUNAVAILABLE = -4,
    SR_ETIMEOUT = -5, SR_ECONNECT = -6, SR_EQUERY = -7, SR_ESTALE = -8, SR_EDRIVER = -9,
    SR_ETXN = -10, SR_EBUSY = -11, SR_EPARTIAL = -12, SR_EMISUSE = -13
} sr_status;

const char *sr_version(void);
const char *sr_strerror(int status);

typedef enum sr_key_kind { SR_KEY_INT = 1, SR_KEY_BYTES = 2 } sr_key_kind;
typedef struct sr_key {
    sr_key_kind kind;
    int64_t i;
    const void *ptr;
    size_t len;
} sr_key;

typedef struct sr_config sr_config;
typedef struct sr_router sr_router;
typedef struct sr_session sr_session;
typedef struct sr_result sr_result;
typedef struct sr_cursor sr_cursor;

typedef enum sr_role { SR_PRIMARY = 0, SR_REPLICA = 1 } sr_role;
typedef enum sr_intent { SR_AUTO = 0, SR_READ = 1, SR_WRITE = 2 } sr_intent;

sr_config *sr_config_new(void);
void sr_config_free(sr_config *c);
int sr_config_set(sr_config *c, const char *option, const char *value);
int sr_config_add_shard(sr_config *c, const char *shard);
int sr_config_shard_set(sr_config *c, const char *shard, const char *attr, const char *value);
int sr_config_add_node(sr_config *c, const char *shard, sr_role role, const char *uri,
                       int weight);
int sr_config_pin_key(sr_config *c, sr_key key, const char *shard);
int sr_config_parse(sr_config *c, const char *text);
int sr_config_load_file(sr_config *c, const char *path);
const char *sr_config_errmsg(const sr_config *c);

int sr_router_open(sr_config *c, sr_router **out);
void sr_router_close(sr_router *r);
int sr_router_reload(sr_router *r, sr_config *c);
int64_t sr_router_version(const sr_router *r);
int sr_router_shard_for(const sr_router *r, sr_key key);
int sr_router_nshards(const sr_router *r);
const char *sr_router_shard_name(const sr_router *r, int shard);
int sr_router_nnodes(const sr_router *r, int shard);

typedef struct sr_node_info {
    int version;
    sr_role role;
    const char *uri;
    int healthy;
    uint64_t statements;
    uint64_t errors;
    uint64_t in_flight;
    uint64_t connections;
    double ewma_latency_ms;
    int role_mismatch;
    uint64_t ejections;
    int64_t lag_ms;
    uint64_t position_checks;
    uint64_t stale_checks;
    int64_t replay_delay_us;
} sr_node_info;
int sr_router_node_info(const sr_router *r, int shard, int node, sr_node_info *out);
int sr_router_maintain(sr_router *r);

typedef int (*sr_write_fn)(void *userdata, const char *data, size_t len);
int sr_router_metrics(const sr_router *r, sr_write_fn write, void *userdata);
int sr_router_metrics_text(const sr_router *r, char *buf, size_t cap);
typedef enum sr_event_kind { SR_EVENT_STATEMENT = 1, SR_EVENT_HEALTH = 2 } sr_event_kind;
typedef struct sr_event {
    int version;
    sr_event_kind kind;
    int shard;
    const char *shard_name;
    int node;
    const char *node_uri;
    sr_role role;
    sr_intent intent;
    const char *reason;
    const char *skipped;
    int retries;
    int64_t wait_us;
    int64_t duration_us;
    int status;
    const char *sqlstate;
    const char *sql;
    const char *health;
    const char *detail;
} sr_event;
typedef void (*sr_event_fn)(void *userdata, const sr_event *ev);
int sr_config_set_event_fn(sr_config *c, sr_event_fn fn, void *userdata);

int sr_session_new(sr_router *r, sr_session **out);
void sr_session_free(sr_session *s);
int sr_session_set_affinity(sr_session *s, sr_key key);
int sr_session_set_trace(sr_session *s, const char *traceparent, int ntags,
                         const char *const *tags);
int sr_session_set(sr_session *s, const char *option, const char *value);
const char *sr_session_token(sr_session *s);
int sr_session_set_token(sr_session *s, const char *token);

typedef struct sr_read_opts {
    int version;
    int max_lag_ms;
    int consistency;
} sr_read_opts;

typedef enum sr_type {
    SR_TYPE_UNKNOWN = 0, SR_TYPE_NULL = 1, SR_TYPE_INT = 2, SR_TYPE_FLOAT = 3,
    SR_TYPE_NUMERIC = 4, SR_TYPE_TEXT = 5, SR_TYPE_BYTES = 6, SR_TYPE_BOOL = 7,
    SR_TYPE_DATETIME = 8
} sr_type;
typedef struct sr_value {
    sr_type type;
    int64_t i;
    double f;
    const void *p;
    size_t len;
} sr_value;

int sr_exec_opts(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                 const char *sql, int nparams, const char *const *params, sr_result **out);
int sr_exec_values(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                   const char *sql, int nparams, const sr_value *params, sr_result **out);
int sr_exec_shard(sr_session *s, int shard, sr_intent intent, const char *sql, int nparams,
                  const char *const *params, sr_result **out);

typedef struct sr_order_key { int col; int desc; int nulls; } sr_order_key;
typedef enum sr_agg {
    SR_AGG_NONE = 0, SR_AGG_COUNT = 1, SR_AGG_SUM = 2, SR_AGG_MIN = 3, SR_AGG_MAX = 4
} sr_agg;
typedef struct sr_merge_spec {
    int version;
    int norder;
    const sr_order_key *order;
    int64_t limit;
    int64_t offset;
    int ngroup;
    const int *group;
    int naggs;
    const sr_agg *aggs;
    int distinct;
} sr_merge_spec;
typedef struct sr_scatter_opts {
    int version;
    int merge;
    const sr_merge_spec *spec;
    int partial;
    const sr_read_opts *read;
} sr_scatter_opts;

int sr_exec_all_values(sr_session *s, sr_intent intent, const sr_scatter_opts *opts,
                       const char *sql, int nparams, const sr_value *params, sr_result **out);
int sr_explain_all(sr_session *s, sr_intent intent, const sr_scatter_opts *opts,
                   const char *sql, char *buf, size_t buflen);

int sr_cursor_open(sr_session *s, sr_key key, sr_intent intent, const sr_read_opts *opts,
                   const char *sql, int nparams, const sr_value *params, sr_cursor **out);
int sr_cursor_open_all(sr_session *s, sr_intent intent, const sr_scatter_opts *opts,
                       const char *sql, int nparams, const sr_value *params, sr_cursor **out);
int sr_cursor_next(sr_cursor *c);
const sr_result *sr_cursor_row(const sr_cursor *c, int *row);
void sr_cursor_close(sr_cursor *c);

int sr_begin(sr_session *s, sr_key key);
int sr_begin_shard(sr_session *s, int shard);
int sr_begin_read_only(sr_session *s, sr_key key);
int sr_commit(sr_session *s);
int sr_rollback(sr_session *s);
int sr_in_transaction(const sr_session *s);

const char *sr_session_errmsg(const sr_session *s);
const char *sr_session_sqlstate(const sr_session *s);
int sr_session_error_location(const sr_session *s, int *shard, int *node);

int sr_result_nrows(const sr_result *res);
int sr_result_ncols(const sr_result *res);
const char *sr_result_colname(const sr_result *res, int col);
const char *sr_result_value(const sr_result *res, int row, int col);
size_t sr_result_length(const sr_result *res, int row, int col);
int sr_result_is_null(const sr_result *res, int row, int col);
int64_t sr_result_affected(const sr_result *res);
int sr_result_shard(const sr_result *res, int row);
sr_type sr_result_coltype(const sr_result *res, int col);
int sr_result_int64(const sr_result *res, int row, int col, int64_t *out);
int sr_result_double(const sr_result *res, int row, int col, double *out);
const void *sr_result_bytes(const sr_result *res, int row, int col, size_t *len);
int sr_result_failed_shard(const sr_result *res, int i);
void sr_result_free(sr_result *res);
"""

# Layout versions of the caller-allocated structs this module describes.
NODE_INFO_VERSION = 2
READ_OPTS_VERSION = 1
MERGE_SPEC_VERSION = 1
SCATTER_OPTS_VERSION = 1
EVENT_VERSION = 1

ffi = cffi.FFI()
ffi.cdef(CDEF)


def _candidates():
    env = os.environ.get("SHARDROUTE_LIBRARY")
    if env:
        yield env
        return
    try:
        from . import _install  # written by meson at install time

        yield os.path.join(_install.LIBDIR, "libshardroute.so." + _install.SOVERSION)
    except ImportError:
        pass
    found = ctypes.util.find_library("shardroute")
    if found:
        yield found


def _load():
    tried = []
    for path in _candidates():
        try:
            return ffi.dlopen(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
    raise ImportError(
        "shardroute: cannot load the C library libshardroute "
        + ("(" + "; ".join(tried) + ")" if tried else "(not found)")
        + ": install it, or set SHARDROUTE_LIBRARY to the path of libshardroute.so"
    )


lib = _load()
