/*
 * The router's log: one callback set in the configuration (sr_config_set_log_fn),
 * called on whatever thread noticed the event. Every layer logs through here,
 * so it sits at the bottom and calls nothing of lib/ but the formatter.
 */
#include "topology.h"

void sr__log(const sr_topo *r, sr_log_level level, const char *fmt, ...)
{
    if (!r || !r->log_fn)
        return;
    char msg[SR_ERRMSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    sr__vfmt(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->log_fn(r->log_ud, level, msg);
}
