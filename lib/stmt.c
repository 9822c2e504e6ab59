/* Statements as the core carries them (stmt.h). */
#include "stmt.h"

#include <string.h>

const sr_value *sr__stmt_values(const sr_stmt *st, sr_value *buf)
{
    if (st->nparams <= 0)
        return NULL;
    if (st->typed)
        return st->values;
    for (int i = 0; i < st->nparams; i++)
        buf[i] = sr_value_text(st->text[i]);
    return buf;
}

int sr__values_check(int n, const sr_value *v, int *bad, const char **what)
{
    for (int i = 0; i < n; i++) {
        *bad = i;
        switch (v[i].type) {
        case SR_TYPE_NULL:
        case SR_TYPE_INT:
        case SR_TYPE_FLOAT:
        case SR_TYPE_BOOL:
            break;
        case SR_TYPE_BYTES:
            if (!v[i].p && v[i].len > 0) {
                *what = "has len > 0 but p is NULL";
                return SR_EINVAL;
            }
            break;
        case SR_TYPE_TEXT:
        case SR_TYPE_NUMERIC:
        case SR_TYPE_DATETIME:
            if (!v[i].p && v[i].len > 0) {
                *what = "has len > 0 but p is NULL";
                return SR_EINVAL;
            }
            if (v[i].len && memchr(v[i].p, '\0', v[i].len)) {
                *what = "is text with a NUL byte (send bytes as SR_TYPE_BYTES)";
                return SR_EINVAL;
            }
            break;
        default:
            *what = "has no known type (SR_TYPE_NULL, _INT, _FLOAT, _NUMERIC, _TEXT, _BYTES, "
                    "_BOOL or _DATETIME)";
            return SR_EINVAL;
        }
    }
    return SR_OK;
}
