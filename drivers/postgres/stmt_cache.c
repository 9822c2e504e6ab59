/*
 * Bounded LRU of prepared statements, keyed by the original SQL text.
 * A chained hash table finds an entry in O(1) so that the hot path (a cached
 * statement) costs one hash and one string compare, not a scan.
 */
#include "stmt_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shardroute.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

int sr__pg_stmt_cache_init(sr_pg_stmt_cache *c, int capacity)
{
    memset(c, 0, sizeof *c);
    c->capacity = capacity > 0 ? capacity : 0;
    if (c->capacity == 0)
        return SR_OK;
    /* Load factor <= 1 at capacity (+1 for the entry briefly over it). */
    size_t n = 8;
    while (n < (size_t)c->capacity + 1)
        n <<= 1;
    c->buckets = calloc(n, sizeof *c->buckets);
    if (!c->buckets)
        return SR_ENOMEM;
    c->nbuckets = n;
    return SR_OK;
}

void sr__pg_stmt_cache_entry_free(sr_pg_stmt *e)
{
    if (!e)
        return;
    free(e->sql);
    free(e);
}

void sr__pg_stmt_cache_free(sr_pg_stmt_cache *c)
{
    sr_pg_stmt *e = c->head;
    while (e) {
        sr_pg_stmt *next = e->next;
        sr__pg_stmt_cache_entry_free(e);
        e = next;
    }
    free(c->buckets);
    memset(c, 0, sizeof *c);
}

static uint64_t hash_sql(const char *sql) { return XXH3_64bits(sql, strlen(sql)); }

static void lru_unlink(sr_pg_stmt_cache *c, sr_pg_stmt *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(sr_pg_stmt_cache *c, sr_pg_stmt *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

sr_pg_stmt *sr__pg_stmt_cache_get(sr_pg_stmt_cache *c, const char *sql)
{
    if (c->capacity == 0)
        return NULL;
    uint64_t h = hash_sql(sql);
    for (sr_pg_stmt *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->chain) {
        if (e->hash == h && strcmp(e->sql, sql) == 0) {
            if (c->head != e) {
                lru_unlink(c, e);
                lru_push_front(c, e);
            }
            return e;
        }
    }
    return NULL;
}

sr_pg_stmt *sr__pg_stmt_cache_new_entry(sr_pg_stmt_cache *c, const char *sql)
{
    sr_pg_stmt *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    size_t n = strlen(sql) + 1;
    e->sql = malloc(n);
    if (!e->sql) {
        free(e);
        return NULL;
    }
    memcpy(e->sql, sql, n);
    e->hash = hash_sql(sql);
    snprintf(e->name, sizeof e->name, "sr_%llu", (unsigned long long)++c->next_id);
    return e;
}

void sr__pg_stmt_cache_insert(sr_pg_stmt_cache *c, sr_pg_stmt *e)
{
    size_t b = e->hash & (c->nbuckets - 1);
    e->chain = c->buckets[b];
    c->buckets[b] = e;
    lru_push_front(c, e);
    c->count++;
}

void sr__pg_stmt_cache_remove(sr_pg_stmt_cache *c, sr_pg_stmt *e)
{
    sr_pg_stmt **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->chain;
    if (!*pp)
        return; /* not linked */
    *pp = e->chain;
    e->chain = NULL;
    lru_unlink(c, e);
    c->count--;
}

sr_pg_stmt *sr__pg_stmt_cache_evict(sr_pg_stmt_cache *c)
{
    if (c->count <= c->capacity || !c->tail)
        return NULL;
    sr_pg_stmt *e = c->tail;
    sr__pg_stmt_cache_remove(c, e);
    return e;
}
