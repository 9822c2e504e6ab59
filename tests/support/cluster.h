/*
 * The test clusters of tests/env/ as the suites that kill, freeze and restart
 * their servers see them (test code, not part of the library): each server
 * from the cluster script's environment (URI, port, pid file, data
 * directory, start command), its processes through tests/support/proc.h (a
 * PID is never taken alone for a server), and the cluster's health: every
 * server answers and every replica replicates.
 *
 * Threads: the functions that change a server (freeze_server, thaw,
 * crash_server, restart_server) and the asserting ones are for the test's
 * own thread; freeze_server records what it stopped in this module, so one
 * test at a time. The functions that return a status never assert, so they
 * also serve teardowns, which run outside the test (Check's parent).
 */
#ifndef SR_TEST_SUPPORT_CLUSTER_H
#define SR_TEST_SUPPORT_CLUSTER_H

#include <stddef.h>

#include "proc.h"

#define MAXSRV 3     /* primary + up to 2 replicas */
#define MAXPROCS 256 /* processes of one server */

typedef struct server {
    const char *name;  /* "primary", "replica1", ... for messages */
    const char *uri;   /* base URI, no database */
    int port;
    char pidfile[512]; /* its first line is the server's (main) PID */
    char marker[512];  /* its data directory, on its command line: tp_identify() */
    const char *start; /* shell command that starts it again and waits until it is ready */
} server;

typedef struct backend {
    const char *label;
    server srv[MAXSRV]; /* [0] is the primary */
    int nsrv;
    /* One row: the answering server's port and 'primary' or 'replica'. */
    const char *who_sql;
    const char *create_sql;
    /*
     * Run before create_sql in its transaction so that the table survives
     * the primary's SIGKILL: the test cluster commits asynchronously
     * (pg_cluster.sh: synchronous_commit = off), which loses the last commits
     * of a killed server. NULL when commits are durable anyway.
     */
    const char *durable_sql;
    const char *insert_sql;
    /* Run on the primary: the number of replicas streaming from it. */
    const char *streaming_sql;
    /* Run on a replica: a value that is `replica_ok` while it replicates. */
    const char *replicating_sql;
    const char *replica_ok;
    /* Set (in the parent) when a teardown could not restore it: later scenarios fail at once. */
    int broken;
    char broken_why[600];
} backend;

/* Fills b from pg_cluster.sh's / mariadb_cluster.sh's environment; 1 when it is complete. */
int cluster_load_pg(backend *b);
int cluster_load_my(backend *b);

/* 1 while the server runs (its pid file names a live process with its data directory). */
int server_alive(const server *sv);

/*
 * Freezes the whole server (SIGSTOP): the main process first, so that it
 * forks nothing while its children are stopped; then every child, so that
 * connections that are already open hang too. Asserts it worked.
 */
void freeze_server(const server *sv);
/* Continues what freeze_server() stopped (and any child the server has now). */
void thaw(const server *sv);
/* Continues every process freeze_server() stopped; never asserts (atexit handler). */
void thaw_frozen(void);
/* Kills the server and all its processes at once (SIGKILL), as a crash would. Asserts. */
void crash_server(const server *sv);
/* Starts the server again through its cluster script and waits until it serves. Asserts. */
void restart_server(const server *sv);

/* Waits (at most 15 s) until the cluster is healthy; fails the test when it is broken. */
void require_healthy(const backend *b);
/* Continues, starts and waits for every server of b (see teardown_backend); asserts it worked. */
void restore_or_fail(const backend *b);
/*
 * A tcase teardown: continues every process, starts any server that is down
 * and waits for replication. Never asserts: when that fails, b is marked
 * broken (with the reason) so that later scenarios fail at once.
 */
void teardown_backend(backend *b);

#endif
