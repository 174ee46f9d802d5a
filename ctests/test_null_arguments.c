/*
 * Every exported function with NULL for each pointer argument, one at a
 * time, returns the error its header documentation gives: NULL_PARAMETER,
 * PGGSS_POLLING_STATUS_FAILED, -1 with errno EINVAL, false, 0, NULL or a
 * static message. No call may crash.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static ssize_t unused_read(void *userdata, uint8_t *buf, size_t len, int *err)
{
    (void)userdata;
    (void)buf;
    (void)len;
    *err = EIO;
    return -1;
}

static ssize_t unused_write(void *userdata, const uint8_t *buf, size_t len, int *err)
{
    (void)userdata;
    (void)buf;
    (void)len;
    *err = EIO;
    return -1;
}

static pggss_conn *new_client(void)
{
    pggss_conn *conn = NULL;
    REQUIRE_INT(pggss_conn_new(&conn), PGGSS_RESULT_OK);
    REQUIRE(conn != NULL);
    return conn;
}

static pggss_conn *new_acceptor(void)
{
    pggss_conn *conn = NULL;
    REQUIRE_INT(pggss_acceptor_new(&conn), PGGSS_RESULT_OK);
    REQUIRE(conn != NULL);
    return conn;
}

static void check_constructors(void)
{
    CHECK_INT(pggss_conn_new(NULL), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_acceptor_new(NULL), PGGSS_RESULT_NULL_PARAMETER);
    pggss_conn_free(NULL);
    CHECK(pggss_version() != NULL);
}

static void check_null_connection(void)
{
    char buffer[64];
    size_t length = 0;

    CHECK_INT(pggss_conn_set_param(NULL, "host", "localhost"), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_set_conninfo(NULL, "host=localhost"), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_set_fd(NULL, 0), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_set_callbacks(NULL, unused_read, unused_write, NULL), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_use_buffers(NULL), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_feed(NULL, (const uint8_t *)"x", 1), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_feed_eof(NULL), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_take_output(NULL, (uint8_t *)buffer, sizeof buffer), 0);
    CHECK_INT(pggss_conn_output_pending(NULL), 0);
    CHECK_INT(pggss_conn_wanted(NULL), 0);
    CHECK_INT(pggss_conn_connect_poll(NULL), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_accept_poll(NULL), PGGSS_POLLING_STATUS_FAILED);

    errno = 0;
    CHECK_INT(pggss_conn_read(NULL, buffer, sizeof buffer), -1);
    CHECK_INT(errno, EINVAL);
    errno = 0;
    CHECK_INT(pggss_conn_write(NULL, "x", 1), -1);
    CHECK_INT(errno, EINVAL);

    CHECK_INT(pggss_conn_outcome(NULL), PGGSS_OUTCOME_PENDING);
    CHECK(!pggss_conn_encryption_in_use(NULL));
    CHECK(pggss_conn_gss_context(NULL) == NULL);
    CHECK_INT(pggss_conn_client_principal(NULL, buffer, sizeof buffer, &length), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_client_user(NULL, buffer, sizeof buffer, &length), PGGSS_RESULT_NULL_PARAMETER);
    CHECK(!pggss_conn_credentials_delegated(NULL));
    CHECK_INT(pggss_conn_store_delegated_credentials(NULL, "MEMORY:pggss-null"), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_max_plaintext(NULL), 0);
    CHECK_INT(pggss_conn_pending(NULL), 0);
    CHECK_INT(pggss_conn_last_result(NULL), PGGSS_RESULT_NULL_PARAMETER);

    CHECK_INT(pggss_conn_startup_packet(NULL, NULL, NULL, NULL, NULL), PGGSS_RESULT_NULL_PARAMETER);

    CHECK_INT(pggss_acceptor_set_keytab(NULL, "/nonexistent.keytab"), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_acceptor_set_service(NULL, "postgres@localhost"), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_acceptor_set_decline(NULL, true), PGGSS_RESULT_NULL_PARAMETER);

    /* A static message: never NULL, and the same string each time. */
    const char *message = pggss_conn_error_message(NULL);
    REQUIRE(message != NULL);
    CHECK(message[0] != '\0');
    CHECK(pggss_conn_error_message(NULL) == message);
    printf("message for a NULL connection: %s\n", message);
}

/*
 * A NULL argument other than the connection fails the call, which then
 * is the last call on that connection.
 */
static void check_last_result(pggss_conn *conn, const char *call)
{
    pggss_result result = pggss_conn_last_result(conn);
    CHECK_MSG(result == PGGSS_RESULT_NULL_PARAMETER,
              "pggss_conn_last_result is %u after %s returned PGGSS_RESULT_NULL_PARAMETER; expected %u",
              (unsigned)result, call, (unsigned)PGGSS_RESULT_NULL_PARAMETER);
}

static void check_null_arguments_of_client(void)
{
    pggss_conn *conn = new_client();
    char buffer[64];
    size_t length = 0;

    CHECK_INT(pggss_conn_set_param(conn, NULL, "localhost"), PGGSS_RESULT_NULL_PARAMETER);
    check_last_result(conn, "pggss_conn_set_param(conn, NULL, value)");
    CHECK_INT(pggss_conn_set_param(conn, "host", NULL), PGGSS_RESULT_NULL_PARAMETER);
    check_last_result(conn, "pggss_conn_set_param(conn, key, NULL)");
    CHECK_INT(pggss_conn_set_conninfo(conn, NULL), PGGSS_RESULT_NULL_PARAMETER);
    check_last_result(conn, "pggss_conn_set_conninfo(conn, NULL)");
    CHECK_INT(pggss_conn_set_callbacks(conn, NULL, unused_write, NULL), PGGSS_RESULT_NULL_PARAMETER);
    check_last_result(conn, "pggss_conn_set_callbacks(conn, NULL, write, userdata)");
    CHECK_INT(pggss_conn_set_callbacks(conn, unused_read, NULL, NULL), PGGSS_RESULT_NULL_PARAMETER);
    check_last_result(conn, "pggss_conn_set_callbacks(conn, read, NULL, userdata)");

    errno = 0;
    CHECK_INT(pggss_conn_read(conn, NULL, 16), -1);
    CHECK_INT(errno, EINVAL);
    errno = 0;
    CHECK_INT(pggss_conn_write(conn, NULL, 16), -1);
    CHECK_INT(errno, EINVAL);

    CHECK_INT(pggss_conn_client_principal(conn, NULL, sizeof buffer, &length), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_client_principal(conn, buffer, sizeof buffer, NULL), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_client_user(conn, NULL, sizeof buffer, &length), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_client_user(conn, buffer, sizeof buffer, NULL), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_conn_store_delegated_credentials(conn, NULL), PGGSS_RESULT_NULL_PARAMETER);

    /* userdata may be NULL. */
    CHECK_INT(pggss_conn_set_callbacks(conn, unused_read, unused_write, NULL), PGGSS_RESULT_OK);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_OK);
    pggss_conn_free(conn);
}

static void check_null_arguments_of_buffers(void)
{
    pggss_conn *conn = new_client();
    char buffer[64];

    REQUIRE_INT(pggss_conn_use_buffers(conn), PGGSS_RESULT_OK);
    CHECK_INT(pggss_conn_feed(conn, NULL, 1), PGGSS_RESULT_NULL_PARAMETER);
    /* With len 0, data may be NULL. */
    CHECK_INT(pggss_conn_feed(conn, NULL, 0), PGGSS_RESULT_OK);
    CHECK_INT(pggss_conn_take_output(conn, NULL, sizeof buffer), 0);
    CHECK_INT(pggss_conn_output_pending(conn), 0);
    pggss_conn_free(conn);
}

static void check_null_arguments_of_acceptor(void)
{
    pggss_conn *conn = new_acceptor();

    CHECK_INT(pggss_acceptor_set_keytab(conn, NULL), PGGSS_RESULT_NULL_PARAMETER);
    CHECK_INT(pggss_acceptor_set_service(conn, NULL), PGGSS_RESULT_NULL_PARAMETER);
    /* Every out-pointer may be NULL; a fresh acceptor has kept no packet. */
    CHECK_INT(pggss_conn_startup_packet(conn, NULL, NULL, NULL, NULL), PGGSS_RESULT_INVALID_STATE);
    pggss_conn_free(conn);
}

static void check_result_text(void)
{
    char text[128];
    char small[5];

    size_t length = pggss_result_text(PGGSS_RESULT_NO_CREDENTIALS, text, sizeof text);
    CHECK_STR(text, "no usable Kerberos credentials");
    CHECK_INT(length, strlen(text));

    /* buf may be NULL when len is 0: the call only measures. */
    CHECK_INT(pggss_result_text(PGGSS_RESULT_NO_CREDENTIALS, NULL, 0), length);

    /* Truncated like snprintf: len - 1 characters and a NUL, and the full length returned. */
    CHECK_INT(pggss_result_text(PGGSS_RESULT_NO_CREDENTIALS, small, sizeof small), length);
    CHECK_STR(small, "no u");

    CHECK_INT(pggss_result_text(9999, text, sizeof text), strlen("unknown pggss_result 9999"));
    CHECK_STR(text, "unknown pggss_result 9999");
    pggss_result_text(PGGSS_RESULT_NULL_PARAMETER, text, sizeof text);
    CHECK(text[0] != '\0');
}

int main(void)
{
    check_constructors();
    check_null_connection();
    check_null_arguments_of_client();
    check_null_arguments_of_buffers();
    check_null_arguments_of_acceptor();
    check_result_text();
    return test_finish();
}
