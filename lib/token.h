/*
 * Consistency tokens (token.c): parsing and writing the text that carries a
 * session's write positions between sessions and processes. Pure functions
 * of the router's topology; the session side is in session.c.
 */
#ifndef SR_TOKEN_H
#define SR_TOKEN_H

#include "topology.h"

/*
 * A parsed token: for each shard of the router the offset of its position in
 * `text`, or -1; entries for shards the router does not have are counted.
 */
typedef struct sr_token_parsed {
    long *pos_of;           /* [nshards] */
    char *text;             /* the decoded positions, NUL-terminated each */
    int entries;            /* shards with a position */
    int unknown;            /* entries ignored: no such shard here */
    char first_unknown[64 * 4 + 8]; /* its name, control bytes escaped (for the log) */
} sr_token_parsed;

/*
 * Parses and checks a whole token against the router (topology, names,
 * positions the shard's driver accepts, the size and entry caps) without
 * changing anything. SR_EINVAL or SR_ENOMEM with the reason in `why`
 * (untrusted bytes escaped); on success free `out` with sr__token_parsed_free()
 * (pos_of is NULL for the empty token).
 */
int sr__token_parse(sr_topo *r, const char *token, sr_token_parsed *out, char *why,
                    size_t whylen);
void sr__token_parsed_free(sr_token_parsed *t);

/*
 * Writes the token of `n` shards (names[i], positions[i]; NULL or the unknown
 * marker: no entry) into buf; its length, 0 when it has no entry or did not fit.
 */
size_t sr__token_encode(uint64_t topology, const char *const *names, const char *const *positions,
                        int n, char *buf, size_t cap);

/*
 * The token of a session's write positions (`written`: [nshards] or NULL) as
 * a new string the caller frees with free(): "" when it has none.
 * SR_ENOMEM.
 */
int sr__token_build(sr_topo *r, const char *const *written, char **out);

/* The longest token the router accepts (>= the longest it can emit). */
size_t sr__token_max_bytes(sr_topo *r);

/* Frees the router's token index (sr_router_close). */
void sr__token_index_free(sr_topo *r);

#endif
