/*
 * The text protocol (COM_QUERY), non-blocking: for the driver's own queries
 * (role, GTID positions, replica status, transaction control) and for the
 * statements the server refuses to prepare.
 */
#include "my_internal.h"

#include <stdlib.h>
#include <string.h>

/* Reads and drops the further result sets of a CALL, so the connection is
 * ready for the next command. */
static int drain_results(sr_driver_conn *c, int64_t deadline_ns, sr_driver_error *err)
{
    while (mysql_more_results(c->my)) {
        int nrc = 0;
        int st = mysql_next_result_start(&nrc, c->my);
        SR_MY_AWAIT(c->my, deadline_ns, st, &nrc, c->my, mysql_next_result_cont);
        if (st != 0)
            return sr__my_timed_out(c, "next result", 1, err);
        if (nrc > 0)
            return sr__my_fail_conn(c, "next result", err);
        if (nrc < 0)
            break;
        MYSQL_RES *r = NULL;
        st = mysql_store_result_start(&r, c->my);
        SR_MY_AWAIT(c->my, deadline_ns, st, &r, c->my, mysql_store_result_cont);
        if (st != 0)
            return sr__my_timed_out(c, "next result", 1, err);
        mysql_free_result(r);
        if (!r && mysql_errno(c->my))
            return sr__my_fail_conn(c, "next result", err);
    }
    return SR_OK;
}

/*
 * Sends a text-protocol statement and stores its first result (*r stays
 * NULL for a statement that returns no rows), both bounded by the deadline.
 */
static int send_and_store(sr_driver_conn *c, const char *sql, int64_t deadline_ns, MYSQL_RES **out,
                          sr_driver_error *err)
{
    int qrc = 1;
    int st = mysql_real_query_start(&qrc, c->my, sql, strlen(sql));
    SR_MY_AWAIT(c->my, deadline_ns, st, &qrc, c->my, mysql_real_query_cont);
    if (st != 0)
        return sr__my_timed_out(c, "query", 1, err);
    if (qrc != 0)
        return sr__my_fail_conn(c, "query", err);

    MYSQL_RES *r = NULL;
    st = mysql_store_result_start(&r, c->my);
    SR_MY_AWAIT(c->my, deadline_ns, st, &r, c->my, mysql_store_result_cont);
    if (st != 0)
        return sr__my_timed_out(c, "query", 1, err);
    if (!r && mysql_field_count(c->my) > 0)
        return sr__my_fail_conn(c, "query", err);
    *out = r;
    return SR_OK;
}

int sr__my_text_query(sr_driver_conn *c, const char *sql, int64_t deadline_ns, MYSQL_RES **res,
                      sr_driver_error *err)
{
    MYSQL_RES *r = NULL;
    int rc = send_and_store(c, sql, deadline_ns, &r, err);
    if (rc != SR_OK)
        return rc;
    rc = drain_results(c, deadline_ns, err);
    if (rc != SR_OK) {
        mysql_free_result(r);
        return rc;
    }
    if (res)
        *res = r;
    else
        mysql_free_result(r);
    return SR_OK;
}

int sr__my_text_exec(sr_driver_conn *c, const char *sql, int64_t deadline_ns, sr_result_builder *rb,
                     sr_driver_error *err)
{
    MYSQL_RES *r = NULL;
    int rc = send_and_store(c, sql, deadline_ns, &r, err);
    if (rc != SR_OK)
        return rc;
    int64_t affected = r ? 0 : (int64_t)mysql_affected_rows(c->my);

    if (r && rb) {
        unsigned ncols = mysql_num_fields(r);
        MYSQL_FIELD *fields = mysql_fetch_fields(r);
        const char *stack_names[32];
        sr_type stack_types[32];
        const char **names = stack_names;
        sr_type *types = stack_types;
        if (ncols > SR_MY_ARRAY_LEN(stack_names)) {
            names = malloc(ncols * sizeof *names);
            types = malloc(ncols * sizeof *types);
            if (!names || !types)
                rc = sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
        }
        if (rc == SR_OK) {
            for (unsigned i = 0; i < ncols; i++) {
                names[i] = fields[i].name;
                types[i] = sr__my_column_type(&fields[i]);
            }
            if (sr_result_builder_columns(rb, (int)ncols, names) != SR_OK ||
                sr_result_builder_types(rb, types) != SR_OK)
                rc = sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
        }
        if (names != stack_names) {
            free(names);
            free(types);
        }
        MYSQL_ROW row;
        /* A stored result: fetching does no I/O. */
        while (rc == SR_OK && (row = mysql_fetch_row(r)) != NULL) {
            unsigned long *lens = mysql_fetch_lengths(r);
            for (unsigned i = 0; i < ncols && rc == SR_OK; i++)
                if (sr_result_builder_value(rb, row[i], row[i] ? lens[i] : 0) != SR_OK)
                    rc = sr_driver_error_set(err, SR_ENOMEM, 0, "", 0, "out of memory");
        }
    } else if (!r && rb) {
        sr_result_builder_affected(rb, affected);
    }
    mysql_free_result(r);
    if (rc != SR_OK)
        return rc;
    return drain_results(c, deadline_ns, err);
}
