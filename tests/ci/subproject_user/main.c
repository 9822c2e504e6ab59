/*
 * Uses shardroute built as a meson subproject: one in-memory SQLite shard, a
 * write and a read through the router. Prints one line that .ci/run checks.
 * The generated <shardroute/version.h> must be found through the
 * subproject's dependency, and its version must be the library's.
 */
#include <shardroute.h>
#include <shardroute/driver.h>

#include <stdio.h>
#include <string.h>

_Static_assert(EXPECTED_DRIVER_ABI == SR_DRIVER_ABI_VERSION,
               "the dependency's driver_abi_version variable is the header's");

static int fail(const char *what, int rc, sr_session *s)
{
    fprintf(stderr, "subproject_user: %s: %s: %s\n", what, sr_strerror(rc),
            s ? sr_session_errmsg(s) : "");
    return 1;
}

int main(void)
{
    if (strcmp(sr_version(), SR_VERSION_STRING) != 0) {
        fprintf(stderr, "subproject_user: library %s, headers %s\n", sr_version(), SR_VERSION_STRING);
        return 1;
    }
    sr_config *cfg = sr_config_new();
    if (!cfg)
        return 1;
    sr_router *router = NULL;
    /* One connection per node: the in-memory database written is the one read. */
    int rc = sr_config_set(cfg, "pool.max_size", "1");
    if (rc == SR_OK)
        rc = sr_config_add_shard(cfg, "only");
    if (rc == SR_OK)
        rc = sr_config_add_node(cfg, "only", SR_PRIMARY, "sqlite::memory:", 1);
    if (rc == SR_OK)
        rc = sr_router_open(cfg, &router);
    if (rc != SR_OK) {
        fprintf(stderr, "subproject_user: configuration: %s: %s\n", sr_strerror(rc),
                sr_config_errmsg(cfg));
        sr_config_free(cfg);
        return 1;
    }
    sr_config_free(cfg);

    sr_session *s = NULL;
    if ((rc = sr_session_new(router, &s)) != SR_OK)
        return fail("session", rc, NULL);
    const char *params[] = {"7", "seven"};
    rc = sr_exec(s, sr_key_int(7), SR_WRITE, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", 0,
                 NULL, NULL);
    if (rc == SR_OK)
        rc = sr_exec(s, sr_key_int(7), SR_WRITE, "INSERT INTO t VALUES (?, ?)", 2, params, NULL);
    if (rc != SR_OK)
        return fail("write", rc, s);
    sr_result *res = NULL;
    rc = sr_exec(s, sr_key_int(7), SR_READ, "SELECT v FROM t WHERE id = ?", 1, params, &res);
    if (rc != SR_OK)
        return fail("read", rc, s);
    if (sr_result_nrows(res) != 1) {
        fprintf(stderr, "subproject_user: %d rows\n", sr_result_nrows(res));
        return 1;
    }
    printf("subproject shardroute %s (driver ABI %d): %s\n", SR_VERSION_STRING, SR_DRIVER_ABI_VERSION,
           sr_result_value(res, 0, 0));
    sr_result_free(res);
    sr_session_free(s);
    sr_router_close(router);
    return 0;
}
