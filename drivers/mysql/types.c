/*
 * The MySQL/MariaDB driver's types (driver ABI 6): the portable sr_type of a
 * result column from its field type, and typed parameters bound in binary
 * where the protocol has a binary form (integers, floats, bytes).
 *
 * Values are still fetched as text (MYSQL_TYPE_STRING binds), which is the
 * form sr_type promises for every type but BYTES, and BYTES columns come as
 * their raw bytes that way too.
 */
#include "my_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Connector/C's number of the "binary" character set: BINARY, VARBINARY and
 * BLOB columns (and expressions on them) carry it. */
#define SR_MY_BINARY_CHARSET 63

sr_type sr__my_column_type(const MYSQL_FIELD *f)
{
    switch (f->type) {
    case MYSQL_TYPE_TINY: case MYSQL_TYPE_SHORT: case MYSQL_TYPE_LONG: case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_YEAR:
        return SR_TYPE_INT;
    case MYSQL_TYPE_LONGLONG:
        /* BIGINT UNSIGNED goes past int64: exact decimal text instead. */
        return (f->flags & UNSIGNED_FLAG) ? SR_TYPE_NUMERIC : SR_TYPE_INT;
    case MYSQL_TYPE_FLOAT: case MYSQL_TYPE_DOUBLE:
        return SR_TYPE_FLOAT;
    case MYSQL_TYPE_DECIMAL: case MYSQL_TYPE_NEWDECIMAL:
        return SR_TYPE_NUMERIC;
    case MYSQL_TYPE_DATE: case MYSQL_TYPE_NEWDATE: case MYSQL_TYPE_TIME: case MYSQL_TYPE_TIME2:
    case MYSQL_TYPE_DATETIME: case MYSQL_TYPE_DATETIME2: case MYSQL_TYPE_TIMESTAMP:
    case MYSQL_TYPE_TIMESTAMP2:
        return SR_TYPE_DATETIME;
    case MYSQL_TYPE_BIT: case MYSQL_TYPE_GEOMETRY:
        return SR_TYPE_BYTES;
    case MYSQL_TYPE_VARCHAR: case MYSQL_TYPE_VAR_STRING: case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_TINY_BLOB: case MYSQL_TYPE_MEDIUM_BLOB: case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
        return f->charsetnr == SR_MY_BINARY_CHARSET ? SR_TYPE_BYTES : SR_TYPE_TEXT;
    case MYSQL_TYPE_ENUM: case MYSQL_TYPE_SET: case MYSQL_TYPE_JSON:
        return SR_TYPE_TEXT;
    default:
        return SR_TYPE_UNKNOWN; /* MYSQL_TYPE_NULL: an expression of NULLs only */
    }
}

/* Grows the typed-parameter scratch to n parameters and `bytes` copied bytes. */
static int scratch_values(sr_my_scratch *s, int n, size_t bytes)
{
    if (sr__my_scratch_params(s, n) != 0)
        return -1;
    if (n > s->pvcap) {
        int64_t *pi = realloc(s->pint, (size_t)n * sizeof *pi);
        if (!pi)
            return -1;
        s->pint = pi;
        double *pd = realloc(s->pdbl, (size_t)n * sizeof *pd);
        if (!pd)
            return -1;
        s->pdbl = pd;
        s->pvcap = n;
    }
    if (bytes > s->pbytes_cap) {
        char *pb = realloc(s->pbytes, bytes);
        if (!pb)
            return -1;
        s->pbytes = pb;
        s->pbytes_cap = bytes;
    }
    return 0;
}

int sr__my_stage_values(sr_driver_conn *c, int nparams, const sr_value *params,
                        sr_driver_error *err)
{
    sr_my_scratch *s = &c->scratch;
    size_t bytes = 0;
    for (int i = 0; i < nparams; i++) {
        switch (params[i].type) {
        case SR_TYPE_NULL: case SR_TYPE_INT: case SR_TYPE_BOOL: case SR_TYPE_FLOAT:
            break;
        case SR_TYPE_TEXT: case SR_TYPE_NUMERIC: case SR_TYPE_DATETIME: case SR_TYPE_BYTES:
            if (params[i].len > UINT32_MAX || (params[i].len && !params[i].p))
                return sr_driver_error_set(err, SR_EINVAL, 0, "", 0,
                                           "parameter %d: no bytes, or longer than 4 GiB", i + 1);
            bytes += params[i].len;
            break;
        default:
            return sr_driver_error_set(err, SR_EINVAL, 0, "", 0, "parameter %d: unknown type %d",
                                       i + 1, (int)params[i].type);
        }
    }
    if (nparams == 0)
        return SR_OK;
    if (scratch_values(s, nparams, bytes ? bytes : 1) != 0)
        return sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
    memset(s->pbind, 0, (size_t)nparams * sizeof *s->pbind);
    size_t at = 0;
    for (int i = 0; i < nparams; i++) {
        const sr_value *v = &params[i];
        MYSQL_BIND *b = &s->pbind[i];
        s->pnull[i] = v->type == SR_TYPE_NULL;
        s->plen[i] = 0;
        b->is_null = &s->pnull[i];
        b->length = &s->plen[i];
        switch (v->type) {
        case SR_TYPE_NULL:
            b->buffer_type = MYSQL_TYPE_NULL;
            break;
        case SR_TYPE_INT: case SR_TYPE_BOOL:
            /* MariaDB's BOOLEAN is TINYINT: true and false travel as 1 and 0. */
            s->pint[i] = v->type == SR_TYPE_BOOL ? v->i != 0 : v->i;
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = &s->pint[i];
            break;
        case SR_TYPE_FLOAT:
            s->pdbl[i] = v->f;
            b->buffer_type = MYSQL_TYPE_DOUBLE;
            b->buffer = &s->pdbl[i];
            break;
        default: /* TEXT, NUMERIC, DATETIME as text the server converts; BYTES as a BLOB */
            if (v->len)
                memcpy(s->pbytes + at, v->p, v->len);
            b->buffer_type = v->type == SR_TYPE_BYTES ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
            b->buffer = s->pbytes + at;
            b->buffer_length = (unsigned long)v->len;
            s->plen[i] = (unsigned long)v->len;
            at += v->len;
            break;
        }
    }
    return SR_OK;
}
