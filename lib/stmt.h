/*
 * One statement as the layers below the entry points carry it: the SQL and
 * its parameters, either text (sr_exec) or typed (sr_exec_values), never
 * both. Borrowed from the caller for the duration of the call.
 */
#ifndef SR_STMT_H
#define SR_STMT_H

#include "internal.h"

typedef struct sr_stmt {
    const char *sql;
    int nparams;
    const char *const *text; /* text parameters (NULL element: SQL NULL), or NULL */
    const sr_value *values;  /* typed parameters (when `typed`) */
    bool typed;              /* the parameters are `values` (sr_exec_values), not `text` */
    bool write;              /* routed as a write: the metrics' intent label (node.c) */
} sr_stmt;

/* Whether the statement needs a driver that takes typed parameters (driver ABI 6 steps). */
static inline bool sr__stmt_typed(const sr_stmt *st) { return st->typed && st->nparams > 0; }

/*
 * The statement's parameters as typed values for a driver's send(): the
 * typed ones as they are, text ones as SR_TYPE_TEXT (NULL as SR_TYPE_NULL),
 * into `buf` (nparams entries). Returns the array to pass (NULL when none).
 */
const sr_value *sr__stmt_values(const sr_stmt *st, sr_value *buf);

/*
 * Checks typed parameters (a known type, `p` set when len > 0, no NUL byte
 * in TEXT / NUMERIC / DATETIME). Returns SR_OK, or SR_EINVAL with the index
 * of the bad value in *bad and what is wrong in *what (static text).
 */
int sr__values_check(int n, const sr_value *v, int *bad, const char **what);

#endif
