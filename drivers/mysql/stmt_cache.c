/*
 * Server-side prepared statements of one connection, keyed by SQL text, in a
 * bounded LRU: a repeated statement is parsed once per connection, and the
 * server's prepared-statement count (max_prepared_stmt_count) stays bounded.
 * Capacities are small (tens of statements), so a flat array scanned by hash
 * beats a linked structure; the most recent entry is checked first, since hot
 * loops repeat one statement.
 */
#include "my_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    sr_my_stmt s; /* first: entries are handed out as sr_my_stmt pointers */
    uint64_t hash;
    uint64_t used; /* tick of the last use; the smallest is evicted */
    size_t len;
    char *sql;
} entry;

struct sr_my_stmt_cache {
    int capacity;
    int count;
    int mru; /* index of the most recently used entry, -1 when none */
    uint64_t tick;
    entry *e;
};

static uint64_t sql_hash(const char *sql, size_t len)
{
    return sr__hash_key(sr_key_bytes(sql, len));
}

int sr__my_stmt_cache_new(int capacity, sr_my_stmt_cache **out)
{
    sr_my_stmt_cache *sc = calloc(1, sizeof *sc);
    if (!sc)
        return SR_ENOMEM;
    sc->capacity = capacity > 0 ? capacity : 0;
    sc->mru = -1;
    if (sc->capacity > 0) {
        sc->e = calloc((size_t)sc->capacity, sizeof *sc->e);
        if (!sc->e) {
            free(sc);
            return SR_ENOMEM;
        }
    }
    *out = sc;
    return SR_OK;
}

/* Forgets entry i (its statement is the caller's business). */
static void unlink_entry(sr_my_stmt_cache *sc, int i)
{
    free(sc->e[i].sql);
    free((void *)sc->e[i].s.names);
    sc->e[i] = sc->e[--sc->count];
    sc->mru = -1;
}

void sr__my_stmt_cache_free(sr_my_stmt_cache *sc)
{
    if (!sc)
        return;
    while (sc->count > 0) {
        MYSQL_STMT *stmt = sc->e[sc->count - 1].s.stmt;
        unlink_entry(sc, sc->count - 1);
        mysql_stmt_close(stmt);
    }
    free(sc->e);
    free(sc);
}

sr_my_stmt *sr__my_stmt_cache_get(sr_my_stmt_cache *sc, const char *sql, size_t len)
{
    if (sc->count == 0)
        return NULL;
    if (sc->mru >= 0) {
        entry *e = &sc->e[sc->mru];
        if (e->len == len && memcmp(e->sql, sql, len) == 0) {
            e->used = ++sc->tick;
            return &e->s;
        }
    }
    uint64_t h = sql_hash(sql, len);
    for (int i = 0; i < sc->count; i++) {
        entry *e = &sc->e[i];
        if (e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0) {
            e->used = ++sc->tick;
            sc->mru = i;
            return &e->s;
        }
    }
    return NULL;
}

sr_my_stmt *sr__my_stmt_cache_put(sr_my_stmt_cache *sc, const char *sql, size_t len,
                                  MYSQL_STMT *stmt)
{
    if (sc->capacity == 0)
        return NULL;
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, sql, len);
    copy[len] = '\0';
    if (sc->count == sc->capacity) {
        int lru = 0;
        for (int i = 1; i < sc->count; i++)
            if (sc->e[i].used < sc->e[lru].used)
                lru = i;
        MYSQL_STMT *old = sc->e[lru].s.stmt;
        unlink_entry(sc, lru);
        mysql_stmt_close(old);
    }
    int i = sc->count++;
    entry *e = &sc->e[i];
    memset(e, 0, sizeof *e);
    e->s.stmt = stmt;
    e->hash = sql_hash(sql, len);
    e->used = ++sc->tick;
    e->len = len;
    e->sql = copy;
    sc->mru = i;
    return &e->s;
}

int sr__my_stmt_cache_detach(sr_my_stmt_cache *sc, MYSQL_STMT *stmt)
{
    for (int i = 0; i < sc->count; i++) {
        if (sc->e[i].s.stmt == stmt) {
            unlink_entry(sc, i);
            return 1;
        }
    }
    return 0;
}

int sr__my_stmt_remember_names(sr_my_stmt *e, unsigned n, const char *const *names)
{
    /* One block: the pointer array, then the strings. */
    size_t bytes = n * sizeof(char *);
    for (unsigned i = 0; i < n; i++)
        bytes += strlen(names[i] ? names[i] : "") + 1;
    char *block = malloc(bytes ? bytes : 1);
    if (!block)
        return -1;
    const char **ptrs = (const char **)(void *)block;
    char *p = block + n * sizeof(char *);
    for (unsigned i = 0; i < n; i++) {
        const char *src = names[i] ? names[i] : "";
        size_t l = strlen(src) + 1;
        memcpy(p, src, l);
        ptrs[i] = p;
        p += l;
    }
    free((void *)e->names);
    e->names = ptrs;
    e->nnames = n;
    return 0;
}
