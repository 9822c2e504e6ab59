/*
 * What the connection's statement cache (sr_stmt_cache, shardroute/driver.h)
 * keeps per server-side prepared statement, and how an entry is released.
 * The cache bounds them by count and by bytes of SQL text, so the server's
 * prepared-statement count (max_prepared_stmt_count) and memory stay bounded.
 */
#include "my_internal.h"

#include <stdlib.h>
#include <string.h>

void sr__my_stmt_release(void *ctx, void *value)
{
    (void)ctx;
    sr_my_stmt *e = value;
    mysql_stmt_close(e->stmt);
    free((void *)e->names);
}

int sr__my_stmt_remember_columns(sr_my_stmt *e, unsigned n, const char *const *names,
                                 const sr_type *types)
{
    /* One block: the pointer array, the types, then the strings. */
    size_t bytes = n * sizeof(char *) + n * sizeof(sr_type);
    for (unsigned i = 0; i < n; i++)
        bytes += strlen(names[i] ? names[i] : "") + 1;
    char *block = malloc(bytes ? bytes : 1);
    if (!block)
        return -1;
    const char **ptrs = (const char **)(void *)block;
    sr_type *tps = (sr_type *)(void *)(block + n * sizeof(char *));
    memcpy(tps, types, n * sizeof *tps);
    char *p = block + n * sizeof(char *) + n * sizeof(sr_type);
    for (unsigned i = 0; i < n; i++) {
        const char *src = names[i] ? names[i] : "";
        size_t l = strlen(src) + 1;
        memcpy(p, src, l);
        ptrs[i] = p;
        p += l;
    }
    free((void *)e->names);
    e->names = ptrs;
    e->types = tps;
    e->nnames = n;
    return 0;
}
