/*
 * The PostgreSQL driver's per-connection prepared-statement cache: a bounded
 * LRU map from the statement's original SQL text to the name it was prepared
 * under on the server. Pure bookkeeping, no I/O: the driver prepares and
 * deallocates, this only decides names and what to evict.
 */
#ifndef SR_PG_STMT_CACHE_H
#define SR_PG_STMT_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sr_pg_stmt {
    char *sql;       /* the original text (the key), owned */
    char name[24];   /* the server-side name, "sr_<n>" */
    uint64_t hash;
    struct sr_pg_stmt *chain;     /* bucket chain */
    struct sr_pg_stmt *prev, *next; /* LRU list: head most recent */
} sr_pg_stmt;

typedef struct sr_pg_stmt_cache {
    sr_pg_stmt **buckets;
    size_t nbuckets;   /* power of two */
    int count;
    int capacity;      /* entries kept; 0 disables the cache */
    uint64_t next_id;  /* names are never reused on a connection */
    sr_pg_stmt *head, *tail;
} sr_pg_stmt_cache;

/* An empty cache of `capacity` entries (0: disabled). SR_OK or SR_ENOMEM. */
int sr__pg_stmt_cache_init(sr_pg_stmt_cache *c, int capacity);

/* Frees every entry (without touching the server). */
void sr__pg_stmt_cache_free(sr_pg_stmt_cache *c);

/* The entry for `sql`, marked most recently used; NULL when absent. */
sr_pg_stmt *sr__pg_stmt_cache_get(sr_pg_stmt_cache *c, const char *sql);

/*
 * A new entry for `sql` (not yet in the cache) with a fresh name, not yet
 * linked: the driver prepares it under that name and then calls _insert, or
 * frees it with _entry_free if the prepare failed. NULL when out of memory.
 */
sr_pg_stmt *sr__pg_stmt_cache_new_entry(sr_pg_stmt_cache *c, const char *sql);

/* Links a prepared entry as most recently used. */
void sr__pg_stmt_cache_insert(sr_pg_stmt_cache *c, sr_pg_stmt *e);

/*
 * Unlinks and returns the least recently used entry while the cache holds
 * more than its capacity, else NULL. The caller deallocates it on the server
 * and frees it.
 */
sr_pg_stmt *sr__pg_stmt_cache_evict(sr_pg_stmt_cache *c);

/* Unlinks an entry (e.g. its plan was invalidated); the caller frees it. */
void sr__pg_stmt_cache_remove(sr_pg_stmt_cache *c, sr_pg_stmt *e);

void sr__pg_stmt_cache_entry_free(sr_pg_stmt *e);

#endif
