/*
 * Simple queries over a GSSAPI-encrypted TCP connection, and the
 * connection's properties: principal, security context, packet size.
 */

#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <gssapi/gssapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void check_version(void)
{
    const char *version = pggss_version();
    REQUIRE(version != NULL);
    CHECK(isdigit((unsigned char)version[0]));
    CHECK(strchr(version, '.') != NULL);
    CHECK(pggss_version() == version);
}

static void check_client_principal(pggss_conn *gss)
{
    const char *expected = fixture_env("PGGSS_PRINCIPAL");
    size_t expected_length = strlen(expected);
    char buffer[256];
    size_t length = 0;

    CHECK_INT(pggss_conn_client_principal(gss, buffer, sizeof buffer, &length), PGGSS_RESULT_OK);
    CHECK_STR(buffer, expected);
    CHECK_INT(length, expected_length);

    /* A buffer without room for the NUL is too small and stays untouched. */
    memset(buffer, 'Z', sizeof buffer);
    length = 0;
    CHECK_INT(pggss_conn_client_principal(gss, buffer, expected_length, &length), PGGSS_RESULT_BUFFER_TOO_SMALL);
    CHECK_INT(length, expected_length);
    CHECK_INT(buffer[0], 'Z');
    CHECK_INT(buffer[expected_length - 1], 'Z');

    length = 0;
    CHECK_INT(pggss_conn_client_principal(gss, buffer, 1, &length), PGGSS_RESULT_BUFFER_TOO_SMALL);
    CHECK_INT(length, expected_length);

    length = 0;
    CHECK_INT(pggss_conn_client_principal(gss, buffer, expected_length + 1, &length), PGGSS_RESULT_OK);
    CHECK_STR(buffer, expected);
    CHECK_INT(length, expected_length);
}

static void display_name(gss_name_t name, char *text, size_t size)
{
    OM_uint32 minor;
    gss_buffer_desc buffer = GSS_C_EMPTY_BUFFER;

    text[0] = '\0';
    if (gss_display_name(&minor, name, &buffer, NULL) == GSS_S_COMPLETE) {
        snprintf(text, size, "%.*s", (int)buffer.length, (const char *)buffer.value);
        gss_release_buffer(&minor, &buffer);
    }
}

/*
 * Inspects the context with read-only GSSAPI calls: wrapping with it here
 * would break the sequence numbers of the stream.
 */
static void check_gss_context(pggss_conn *gss)
{
    gss_ctx_id_t context = pggss_conn_gss_context(gss);
    REQUIRE(context != GSS_C_NO_CONTEXT);
    CHECK(pggss_conn_gss_context(gss) == context);

    OM_uint32 minor = 0;
    gss_name_t source = GSS_C_NO_NAME;
    gss_name_t target = GSS_C_NO_NAME;
    OM_uint32 flags = 0;
    int locally_initiated = 0;
    int open = 0;
    OM_uint32 major = gss_inquire_context(&minor, context, &source, &target, NULL, NULL, &flags,
                                          &locally_initiated, &open);
    REQUIRE_INT(major, GSS_S_COMPLETE);

    char name[256];
    char expected_target[256];
    display_name(source, name, sizeof name);
    CHECK_STR(name, fixture_env("PGGSS_PRINCIPAL"));
    display_name(target, name, sizeof name);
    snprintf(expected_target, sizeof expected_target, "postgres/localhost@%s", fixture_env("PGGSS_REALM"));
    CHECK_STR(name, expected_target);
    CHECK(flags & GSS_C_CONF_FLAG);
    CHECK(flags & GSS_C_INTEG_FLAG);
    CHECK(flags & GSS_C_MUTUAL_FLAG);
    CHECK(locally_initiated);
    CHECK(open);
    gss_release_name(&minor, &source);
    gss_release_name(&minor, &target);

    /* libpq sizes packets the same way: 16384 bytes less the 4-byte length word. */
    OM_uint32 limit = 0;
    major = gss_wrap_size_limit(&minor, context, 1, GSS_C_QOP_DEFAULT, PGGSS_MAX_PACKET_SIZE - 4, &limit);
    CHECK_INT(major, GSS_S_COMPLETE);
    CHECK_INT(pggss_conn_max_plaintext(gss), limit);
}

static void check_large_value(pgw_conn *w)
{
    pgw_result result = {0};

    /* 200003 bytes span about 13 packets of at most 16384 bytes. */
    if (CHECK_PGW(w, pgw_query_collect(w, "SELECT repeat('x', 200000) || 'end' AS big", &result))
        && CHECK_INT(result.row_count, 1)) {
        const char *value = result.rows[0][0];
        REQUIRE(value != NULL);
        CHECK_INT(strlen(value), 200003);
        CHECK_INT(strspn(value, "x"), 200000);
        CHECK_STR(value + 200000, "end");
        CHECK_STR(result.names[0], "big");
    }
    pgw_result_clear(&result);
}

static void check_many_rows(pgw_conn *w)
{
    pgw_result result = {0};

    if (CHECK_PGW(w, pgw_query_collect(w, "SELECT i, md5(i::text), NULL::text AS nothing "
                                          "FROM generate_series(1, 5000) i",
                                       &result))) {
        CHECK_INT(result.row_count, 5000);
        CHECK_INT(result.column_count, 3);
        CHECK_STR(result.command_tag, "SELECT 5000");
        size_t wrong = 0;
        for (size_t r = 0; r < result.row_count; r++) {
            char expected[24];
            snprintf(expected, sizeof expected, "%zu", r + 1);
            char **row = result.rows[r];
            if (row[0] == NULL || strcmp(row[0], expected) != 0 || row[1] == NULL || strlen(row[1]) != 32
                || row[2] != NULL) {
                wrong++;
            }
        }
        CHECK_INT(wrong, 0);
    }
    pgw_result_clear(&result);

    /* md5('1') is a fixed value, which checks the bytes of one row end to end. */
    char value[64];
    if (CHECK_PGW(w, pgw_query_value(w, "SELECT md5('1')", value, sizeof value))) {
        CHECK_STR(value, "c4ca4238a0b923820dcc509a6f75849b");
    }
}

static void check_server_error(pgw_conn *w)
{
    char value[64];

    CHECK_INT(pgw_query_value(w, "SELECT * FROM no_such_table", value, sizeof value), PGW_SERVER_ERROR);
    CHECK_STR(w->sqlstate, "42P01");
    CHECK_CONTAINS(w->error, "relation \"no_such_table\" does not exist");
    CHECK_PREFIX(w->error, "ERROR 42P01");
    CHECK(!w->broken);

    /* The connection stays usable after an ErrorResponse. */
    if (CHECK_PGW(w, pgw_query_value(w, "SELECT 41 + 1", value, sizeof value))) {
        CHECK_STR(value, "42");
    }
}

int main(void)
{
    session s;
    char value[256];

    check_version();
    open_encrypted_session(&s, NULL);

    CHECK_INT(pggss_conn_outcome(s.gss), PGGSS_OUTCOME_ENCRYPTED);
    CHECK(pggss_conn_encryption_in_use(s.gss));
    CHECK_INT(pggss_conn_last_result(s.gss), PGGSS_RESULT_OK);
    CHECK_STR(pggss_conn_error_message(s.gss), "");
    CHECK(!pggss_conn_credentials_delegated(s.gss));
    CHECK(pggss_conn_max_plaintext(s.gss) > 0);
    CHECK(pggss_conn_max_plaintext(s.gss) < PGGSS_MAX_PACKET_SIZE);
    check_client_principal(s.gss);
    check_gss_context(s.gss);

    check_pg_stat_gssapi(&s.w, true);

    CHECK(s.w.backend_pid > 0);
    if (CHECK_PGW(&s.w, pgw_query_value(&s.w, "SELECT pg_backend_pid()", value, sizeof value))) {
        CHECK_INT(atoll(value), s.w.backend_pid);
    }
    if (CHECK_PGW(&s.w, pgw_query_value(&s.w, "SELECT current_user", value, sizeof value))) {
        CHECK_STR(value, fixture_env("PGUSER"));
    }
    if (CHECK_PGW(&s.w, pgw_query_value(&s.w, "SHOW application_name", value, sizeof value))) {
        CHECK_STR(value, "pggssenc-ctests");
    }
    CHECK_PREFIX(s.w.server_version, "15.");
    CHECK_INT(s.w.transaction_status, 'I');

    check_large_value(&s.w);
    check_many_rows(&s.w);
    check_server_error(&s.w);
    CHECK_INT(pggss_conn_last_result(s.gss), PGGSS_RESULT_OK);

    /* After Terminate the server closes the connection: an orderly end of stream. */
    CHECK_PGW(&s.w, pgw_terminate(&s.w));
    CHECK_INT(pggss_conn_pending(s.gss), 0);
    char byte;
    CHECK_INT(pggss_conn_read(s.gss, &byte, 1), 0);

    s.w.broken = 1;
    close_session(&s);
    return test_finish();
}
