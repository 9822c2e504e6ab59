/* Transactions (txn.c): what the statement entry points need of an open one. */
#ifndef SR_TXN_H
#define SR_TXN_H

#include "session.h"

/* Runs a statement on the open transaction's connection (SR_ETXN for another shard). */
int sr__txn_exec(sr_session *s, int shard, const sr_stmt *st, sr_result **out);

#endif
