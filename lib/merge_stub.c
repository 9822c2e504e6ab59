/* TEMPORARY (issue 12): concatenation only, until lib/merge.c lands; then deleted. */
#include "merge.h"
#include <stdlib.h>
#include <string.h>
struct sr_merge_plan { int mode; };
int sr__merge_plan_new(const char *sql, sr_sql_dialect dialect, int mode, const sr_merge_spec *spec,
                       sr_merge_plan **out, char **shard_sql, char *why, size_t whylen)
{ (void)dialect; (void)spec; (void)why; (void)whylen; (void)mode;
  sr_merge_plan *p = calloc(1, sizeof *p); *shard_sql = sr_strdup(sql); if (!p || !*shard_sql) { free(p); free(*shard_sql); return SR_ENOMEM; }
  *out = p; return SR_OK; }
void sr__merge_plan_free(sr_merge_plan *p) { free(p); }
bool sr__merge_plan_is_concat(const sr_merge_plan *p) { (void)p; return true; }
bool sr__merge_plan_is_blocking(const sr_merge_plan *p) { (void)p; return false; }
void sr__merge_plan_describe(const sr_merge_plan *p, char *buf, size_t len) { (void)p; sr__fmt(buf, len, "concatenate"); }
struct sr_merger { sr_merge_pull_fn pull; void *ctx; int n, cur; const sr_result *cols; };
int sr__merger_new(const sr_merge_plan *plan, int nshards, sr_merge_pull_fn pull, void *ctx, sr_merger **out)
{ (void)plan; sr_merger *m = calloc(1, sizeof *m); if (!m) return SR_ENOMEM; m->pull = pull; m->ctx = ctx; m->n = nshards; *out = m; return SR_OK; }
int sr__merger_next(sr_merger *m, sr_row_ref *out, char *why, size_t whylen)
{ (void)why; (void)whylen;
  while (m->cur < m->n) { sr_row_ref r = {0}; int rc = m->pull(m->ctx, m->cur, &r); if (rc < 0) return rc;
    if (r.res && !m->cols) m->cols = r.res;
    if (rc == 1) { *out = r; return 1; } m->cur++; }
  return 0; }
const sr_result *sr__merger_columns(const sr_merger *m) { return m->cols; }
void sr__merger_free(sr_merger *m) { free(m); }
