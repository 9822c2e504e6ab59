/*
 * The prepared-statement cache offered to drivers (shardroute/driver.h):
 * a chained hash table over the SQL text for O(1) lookup, and an intrusive
 * doubly linked list for LRU order. Each entry is one allocation: the links,
 * then the driver's value, then the SQL text.
 *
 * Bounded by entries and by bytes, because a count alone lets a few huge
 * statements (64 distinct 10 MB ones) pin gigabytes per connection, and the
 * pool multiplies that by its size.
 */
#include <shardroute/driver.h>

#include <stdalign.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* Values are small structs (a handle and what the driver remembers); a cap
 * keeps a mistaken size from turning every miss into a huge allocation. */
#define VALUE_SIZE_MAX 4096
#define MIN_BUCKETS 16

typedef struct entry {
    struct entry *chain;      /* next in the bucket */
    struct entry *prev, *next; /* LRU list: head is the most recently used */
    uint64_t hash;
    size_t len;               /* of the SQL text */
    size_t charge;            /* len + the driver's handle_bytes */
} entry;

/* The value starts at the first offset past the links that any type may use. */
#define ALIGN_UP(n, a) (((n) + (a) - 1) / (a) * (a))
#define VALUE_OFF ALIGN_UP(sizeof(entry), alignof(max_align_t))

struct sr_stmt_cache {
    entry **buckets;
    size_t nbuckets; /* 0 until the first put, then a power of two */
    entry *head, *tail;
    int count;
    int max_entries;
    size_t bytes;
    size_t max_bytes;
    size_t value_size;
    size_t sql_off; /* offset of the SQL text in an entry */
    sr_stmt_cache_release_fn release;
    void *ctx;
};

static void *value_of(entry *e) { return (char *)e + VALUE_OFF; }

static const char *sql_of(const sr_stmt_cache *c, const entry *e)
{
    return (const char *)e + c->sql_off;
}

static uint64_t hash_sql(const char *sql, size_t len) { return XXH3_64bits(sql, len); }

int sr_stmt_cache_new(int max_entries, size_t max_bytes, size_t value_size,
                      sr_stmt_cache_release_fn release, void *ctx, sr_stmt_cache **out)
{
    if (!out || max_entries < 0 || value_size > VALUE_SIZE_MAX)
        return SR_EINVAL;
    sr_stmt_cache *c = calloc(1, sizeof *c);
    if (!c)
        return SR_ENOMEM;
    c->max_entries = max_bytes > 0 ? max_entries : 0;
    c->max_bytes = max_entries > 0 ? max_bytes : 0;
    c->value_size = value_size;
    c->sql_off = VALUE_OFF + value_size;
    c->release = release;
    c->ctx = ctx;
    *out = c;
    return SR_OK;
}

static void lru_unlink(sr_stmt_cache *c, entry *e)
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

static void lru_push_front(sr_stmt_cache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

/* Unlinks e from its bucket and the list and uncharges it; the caller frees it. */
static void unlink_entry(sr_stmt_cache *c, entry *e)
{
    entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    lru_unlink(c, e);
    c->count--;
    c->bytes -= e->charge;
}

static void release_entry(sr_stmt_cache *c, entry *e)
{
    if (c->release)
        c->release(c->ctx, value_of(e));
    free(e);
}

void sr_stmt_cache_clear(sr_stmt_cache *c)
{
    if (!c)
        return;
    /* Least recently used first, as eviction would have gone. Unlinked before
     * the callback runs, so the cache is consistent whatever the driver does. */
    while (c->tail) {
        entry *e = c->tail;
        unlink_entry(c, e);
        release_entry(c, e);
    }
}

void sr_stmt_cache_free(sr_stmt_cache *c)
{
    if (!c)
        return;
    sr_stmt_cache_clear(c);
    free(c->buckets);
    free(c);
}

static entry *find(const sr_stmt_cache *c, const char *sql, size_t len, uint64_t h)
{
    for (entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->chain)
        if (e->hash == h && e->len == len && memcmp(sql_of(c, e), sql, len) == 0)
            return e;
    return NULL;
}

void *sr_stmt_cache_get(sr_stmt_cache *c, const char *sql, size_t len)
{
    if (!c || !sql || c->count == 0)
        return NULL;
    /* Hot loops repeat one statement: the head needs no hash and no relinking. */
    entry *e = c->head;
    if (e->len == len && memcmp(sql_of(c, e), sql, len) == 0)
        return value_of(e);
    e = find(c, sql, len, hash_sql(sql, len));
    if (!e)
        return NULL;
    lru_unlink(c, e);
    lru_push_front(c, e);
    return value_of(e);
}

int sr_stmt_cache_admits(const sr_stmt_cache *c, size_t len, size_t handle_bytes)
{
    if (!c || c->max_entries == 0)
        return 0;
    /* len + handle_bytes <= max_bytes, written so that it cannot overflow. */
    return handle_bytes <= c->max_bytes && len <= c->max_bytes - handle_bytes;
}

/*
 * Whether `sql` ends in the core's trace comment (trace.c writes
 * "\n/\*key='v',...*\/" with a traceparent among the keys, after the caller's
 * SQL): unique per traced request. The common text does not end in
 * "*\/" and is answered after two byte compares.
 */
static bool one_off_text(const char *sql, size_t len)
{
    static const char key[] = "traceparent='";
    if (len < 4 || sql[len - 1] != '/' || sql[len - 2] != '*')
        return false;
    for (size_t i = len - 2; i-- > 0;) {
        if (sql[i] != '\n' || sql[i + 1] != '/' || sql[i + 2] != '*')
            continue;
        for (size_t j = i + 3; j + sizeof key - 1 <= len; j++)
            if (memcmp(sql + j, key, sizeof key - 1) == 0)
                return true;
        return false; /* the last comment on a line of its own has no traceparent */
    }
    return false;
}

int sr_stmt_cache_admits_text(const sr_stmt_cache *c, const char *sql, size_t len,
                              size_t handle_bytes)
{
    return sql && !one_off_text(sql, len) && sr_stmt_cache_admits(c, len, handle_bytes);
}

/* Doubles the table once it is as full as it is wide. A failure only costs
 * longer chains, so it is not an error. */
static int grow(sr_stmt_cache *c)
{
    size_t n = c->nbuckets ? c->nbuckets * 2 : MIN_BUCKETS;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return c->nbuckets > 0 ? SR_OK : SR_ENOMEM;
    for (entry *e = c->head; e; e = e->next) {
        size_t i = e->hash & (n - 1);
        e->chain = b[i];
        b[i] = e;
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
    return SR_OK;
}

void *sr_stmt_cache_put(sr_stmt_cache *c, const char *sql, size_t len, const void *value,
                        size_t handle_bytes)
{
    if (!c || !sql || (!value && c->value_size > 0) ||
        !sr_stmt_cache_admits_text(c, sql, len, handle_bytes))
        return NULL;
    uint64_t h = hash_sql(sql, len);
    if (c->count > 0 && find(c, sql, len, h))
        return NULL;
    if ((size_t)c->count >= c->nbuckets && grow(c) != SR_OK)
        return NULL;
    if (len > SIZE_MAX - c->sql_off - 1)
        return NULL;
    entry *e = malloc(c->sql_off + len + 1);
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->len = len;
    e->charge = len + handle_bytes; /* admitted: no overflow */
    if (c->value_size > 0)
        memcpy(value_of(e), value, c->value_size);
    char *text = (char *)e + c->sql_off;
    memcpy(text, sql, len);
    text[len] = '\0'; /* so a driver may read the text as a string in a debugger */

    size_t i = h & (c->nbuckets - 1);
    e->chain = c->buckets[i];
    c->buckets[i] = e;
    lru_push_front(c, e);
    c->count++;
    c->bytes += e->charge;

    /* The new entry fits the byte bound alone and the count bound is >= 1, so
     * the loop ends before it reaches the head. */
    while (c->count > c->max_entries || c->bytes > c->max_bytes) {
        entry *old = c->tail;
        unlink_entry(c, old);
        release_entry(c, old);
    }
    return value_of(e);
}

int sr_stmt_cache_take(sr_stmt_cache *c, const char *sql, size_t len, void *value_out)
{
    if (!c || !sql || c->count == 0)
        return 0;
    entry *e = find(c, sql, len, hash_sql(sql, len));
    if (!e)
        return 0;
    unlink_entry(c, e);
    if (value_out && c->value_size > 0)
        memcpy(value_out, value_of(e), c->value_size);
    free(e);
    return 1;
}

int sr_stmt_cache_count(const sr_stmt_cache *c) { return c ? c->count : 0; }

size_t sr_stmt_cache_bytes(const sr_stmt_cache *c) { return c ? c->bytes : 0; }
