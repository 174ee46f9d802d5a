/*
 * GSSENCRequest over the server's Unix-domain socket, where PostgreSQL
 * always responds 'N': "require" fails, "prefer" falls back to plaintext,
 * "disable" sends nothing. pg_hba.conf has `local all all trust`, so the
 * plaintext sessions work.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define SERIES_ROWS 10000
#define SERIES_WIDTH 90

static void check_require_fails(void)
{
    int fd = connect_unix_or_exit();
    pggss_conn *gss = new_gss_conn("host=localhost gssencmode=require", fd);

    CHECK_INT(pggss_conn_connect_poll(gss), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_FAILED);
    CHECK_INT(pggss_conn_last_result(gss), PGGSS_RESULT_SERVER_DECLINED);
    const char *message = pggss_conn_error_message(gss);
    CHECK_CONTAINS(message, "declined GSSENCRequest ('N')");
    CHECK_CONTAINS(message, "gssencmode is \"require\"");
    CHECK(!pggss_conn_encryption_in_use(gss));
    CHECK(pggss_conn_gss_context(gss) == NULL);

    /* A failed connection carries no data. */
    char byte = 'x';
    errno = 0;
    CHECK_INT(pggss_conn_write(gss, &byte, 1), -1);
    CHECK(errno != 0);
    CHECK(errno != EAGAIN);

    pggss_conn_free(gss);
    close(fd);
}

/* Runs a plaintext session on a connection that fell back, and checks that bytes pass through unchanged. */
static void check_plaintext_session(pggss_conn *gss, int fd)
{
    pgw_conn w;
    char value[64];

    REQUIRE_INT(pgw_init(&w, gss, fd), 0);
    REQUIRE_PGW(&w, pgw_startup(&w, fixture_env("PGUSER"), fixture_env("PGDATABASE"), "unix_socket_fallback"));
    check_pg_stat_gssapi(&w, false);
    if (CHECK_PGW(&w, pgw_query_value(&w, "SELECT inet_client_addr() IS NULL", value, sizeof value))) {
        CHECK_STR(value, "t");
    }

    size_t expected_length;
    char *expected = build_series_copy_text(SERIES_ROWS, SERIES_WIDTH, &expected_length);
    REQUIRE(expected != NULL);
    char sql[256];
    format_series_copy_sql(sql, sizeof sql, SERIES_ROWS, SERIES_WIDTH);
    copy_buffer received;
    copy_buffer_init(&received);
    CHECK_PGW(&w, pgw_copy_out(&w, sql, copy_buffer_sink, &received));
    CHECK_BYTES(received.data, received.length, expected, expected_length);

    CHECK_INT(pggss_conn_pending(gss), 0);
    CHECK_INT(pggss_conn_max_plaintext(gss), 0);
    CHECK_INT(pggss_conn_last_result(gss), PGGSS_RESULT_OK);

    copy_buffer_free(&received);
    free(expected);
    CHECK_PGW(&w, pgw_terminate(&w));
    pgw_destroy(&w);
}

static void check_prefer_falls_back(void)
{
    int fd = connect_unix_or_exit();
    pggss_conn *gss = new_gss_conn("host=localhost gssencmode=prefer", fd);

    /* A blocking socket: the first call finishes. */
    CHECK_INT(pggss_conn_connect_poll(gss), PGGSS_POLLING_STATUS_OK);
    CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_SERVER_DECLINED);
    CHECK_INT(pggss_conn_last_result(gss), PGGSS_RESULT_OK);
    CHECK(!pggss_conn_encryption_in_use(gss));
    CHECK(pggss_conn_gss_context(gss) == NULL);
    CHECK(!pggss_conn_credentials_delegated(gss));
    CHECK_INT(pggss_conn_max_plaintext(gss), 0);
    const char *message = pggss_conn_error_message(gss);
    CHECK_CONTAINS(message, "declined GSSAPI encryption ('N')");
    CHECK_CONTAINS(message, "usable in plaintext");

    char principal[128];
    size_t length = 0;
    CHECK_INT(pggss_conn_client_principal(gss, principal, sizeof principal, &length), PGGSS_RESULT_INVALID_STATE);

    /* Negotiation is over: a second call changes nothing. */
    CHECK_INT(pggss_conn_connect_poll(gss), PGGSS_POLLING_STATUS_OK);
    CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_SERVER_DECLINED);

    check_plaintext_session(gss, fd);
    pggss_conn_free(gss);
    close(fd);
}

static void check_disable_sends_nothing(void)
{
    int fd = connect_unix_or_exit();
    pggss_conn *gss = new_gss_conn("host=localhost gssencmode=disable", fd);

    CHECK_INT(pggss_conn_connect_poll(gss), PGGSS_POLLING_STATUS_OK);
    CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_DISABLED);
    CHECK(!pggss_conn_encryption_in_use(gss));
    CHECK_CONTAINS(pggss_conn_error_message(gss), "GSSENCRequest was not sent");

    /* Had GSSENCRequest gone out, the server's 'N' would now be waiting. */
    CHECK(socket_is_empty(fd));

    check_plaintext_session(gss, fd);
    pggss_conn_free(gss);
    close(fd);
}

int main(void)
{
    check_require_fails();
    check_prefer_falls_back();
    check_disable_sends_nothing();
    return test_finish();
}
