/*
 * Calls every exported function of pggssenc with NULL in each pointer
 * argument, one at a time, and checks the documented result: the error
 * code, -1 with errno EINVAL, 0, false, NULL, or a static message. Pointer
 * arguments that the header allows to be NULL are called with NULL too, and
 * must succeed.
 *
 * Prints "PASS function" or "FAIL function" per exported function and
 * "N passed, M failed" at the end. `null_arguments --list` prints the names
 * of the functions covered, which `run` compares with the library's
 * exported symbols so that a new function cannot go untested.
 *
 * Needs no fixture: no call here reaches the network or GSSAPI.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pggssenc.h"

static int failures;

#define EXPECT(cond)                                                        \
    do {                                                                    \
        if (!(cond)) {                                                      \
            printf("    %s:%d: %s is false\n", __FILE__, __LINE__, #cond);  \
            failures++;                                                     \
        }                                                                   \
    } while (0)
#define EXPECT_RESULT(call, expected)                                                              \
    do {                                                                                           \
        int result_ = (int)(call);                                                                 \
        if (result_ != (int)(expected)) {                                                          \
            printf("    %s:%d: %s returned %d, expected %s (%d)\n", __FILE__, __LINE__, #call, result_, \
                   #expected, (int)(expected));                                                    \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static pggss_conn *new_client(void)
{
    pggss_conn *conn = NULL;
    if (pggss_conn_new(&conn) != PGGSS_RESULT_OK || conn == NULL) {
        printf("    pggss_conn_new failed\n");
        exit(1);
    }
    return conn;
}

static pggss_conn *new_acceptor(void)
{
    pggss_conn *conn = NULL;
    if (pggss_acceptor_new(&conn) != PGGSS_RESULT_OK || conn == NULL) {
        printf("    pggss_acceptor_new failed\n");
        exit(1);
    }
    return conn;
}

static ssize_t dummy_read(void *userdata, uint8_t *buf, size_t len, int *err)
{
    (void)userdata;
    (void)buf;
    (void)len;
    *err = EAGAIN;
    return -1;
}

static ssize_t dummy_write(void *userdata, const uint8_t *buf, size_t len, int *err)
{
    (void)userdata;
    (void)buf;
    (void)err;
    return (ssize_t)len;
}

/* Checks a read or write call: -1 with errno EINVAL. */
#define EXPECT_EINVAL(call)                                                                      \
    do {                                                                                         \
        errno = 0;                                                                               \
        ssize_t n_ = (call);                                                                     \
        int errno_ = errno;                                                                      \
        if (n_ != -1 || errno_ != EINVAL) {                                                      \
            printf("    %s:%d: %s returned %zd with errno %d, expected -1 with EINVAL\n", __FILE__, \
                   __LINE__, #call, n_, errno_);                                                 \
            failures++;                                                                          \
        }                                                                                        \
    } while (0)

static void test_pggss_version(void)
{
    const char *version = pggss_version();
    EXPECT(version != NULL && version[0] != '\0');
}

static void test_pggss_result_text(void)
{
    char buf[8];
    size_t full = pggss_result_text(PGGSS_RESULT_NULL_PARAMETER, NULL, 0);
    EXPECT(full == strlen("a required pointer argument was NULL"));
    /* A NULL buffer with a non-zero length writes nothing and still reports the length. */
    EXPECT(pggss_result_text(PGGSS_RESULT_NULL_PARAMETER, NULL, sizeof buf) == full);
    memset(buf, 'x', sizeof buf);
    EXPECT(pggss_result_text(PGGSS_RESULT_NULL_PARAMETER, buf, 0) == full);
    EXPECT(buf[0] == 'x');
}

static void test_pggss_conn_new(void)
{
    EXPECT_RESULT(pggss_conn_new(NULL), PGGSS_RESULT_NULL_PARAMETER);
}

static void test_pggss_acceptor_new(void)
{
    EXPECT_RESULT(pggss_acceptor_new(NULL), PGGSS_RESULT_NULL_PARAMETER);
}

static void test_pggss_conn_free(void)
{
    pggss_conn_free(NULL);
}

static void test_pggss_conn_set_param(void)
{
    pggss_conn *conn = new_client();
    EXPECT_RESULT(pggss_conn_set_param(NULL, "host", "localhost"), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_set_param(conn, NULL, "localhost"), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_set_param(conn, "host", NULL), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_set_param(conn, "host", "localhost"), PGGSS_RESULT_OK);
    pggss_conn_free(conn);
}

static void test_pggss_conn_set_conninfo(void)
{
    pggss_conn *conn = new_client();
    EXPECT_RESULT(pggss_conn_set_conninfo(NULL, "host=localhost"), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_set_conninfo(conn, NULL), PGGSS_RESULT_NULL_PARAMETER);
    pggss_conn_free(conn);
}

static void test_pggss_conn_set_fd(void)
{
    EXPECT_RESULT(pggss_conn_set_fd(NULL, 0), PGGSS_RESULT_NULL_PARAMETER);
}

static void test_pggss_conn_set_callbacks(void)
{
    pggss_conn *conn = new_client();
    int userdata = 0;
    EXPECT_RESULT(pggss_conn_set_callbacks(NULL, dummy_read, dummy_write, &userdata), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_set_callbacks(conn, NULL, dummy_write, &userdata), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_set_callbacks(conn, dummy_read, NULL, &userdata), PGGSS_RESULT_NULL_PARAMETER);
    /* userdata may be NULL. */
    EXPECT_RESULT(pggss_conn_set_callbacks(conn, dummy_read, dummy_write, NULL), PGGSS_RESULT_OK);
    pggss_conn_free(conn);
}

static void test_pggss_conn_use_buffers(void)
{
    EXPECT_RESULT(pggss_conn_use_buffers(NULL), PGGSS_RESULT_NULL_PARAMETER);
}

static void test_pggss_conn_feed(void)
{
    pggss_conn *conn = new_client();
    EXPECT_RESULT(pggss_conn_use_buffers(conn), PGGSS_RESULT_OK);
    EXPECT_RESULT(pggss_conn_feed(NULL, (const uint8_t *)"x", 1), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_feed(conn, NULL, 1), PGGSS_RESULT_NULL_PARAMETER);
    /* With length 0, data may be NULL. */
    EXPECT_RESULT(pggss_conn_feed(conn, NULL, 0), PGGSS_RESULT_OK);
    pggss_conn_free(conn);
}

static void test_pggss_conn_feed_eof(void)
{
    EXPECT_RESULT(pggss_conn_feed_eof(NULL), PGGSS_RESULT_NULL_PARAMETER);
}

static void test_pggss_conn_take_output(void)
{
    pggss_conn *conn = new_client();
    uint8_t buf[16];
    EXPECT_RESULT(pggss_conn_use_buffers(conn), PGGSS_RESULT_OK);
    EXPECT(pggss_conn_take_output(NULL, buf, sizeof buf) == 0);
    EXPECT(pggss_conn_take_output(conn, NULL, sizeof buf) == 0);
    pggss_conn_free(conn);
}

static void test_pggss_conn_output_pending(void)
{
    EXPECT(pggss_conn_output_pending(NULL) == 0);
}

static void test_pggss_conn_wanted(void)
{
    EXPECT(pggss_conn_wanted(NULL) == 0);
}

static void test_pggss_conn_connect_poll(void)
{
    EXPECT_RESULT(pggss_conn_connect_poll(NULL), PGGSS_POLLING_STATUS_FAILED);
}

static void test_pggss_conn_accept_poll(void)
{
    EXPECT_RESULT(pggss_conn_accept_poll(NULL), PGGSS_POLLING_STATUS_FAILED);
}

static void test_pggss_conn_read(void)
{
    pggss_conn *conn = new_client();
    uint8_t buf[16];
    memset(buf, 0xA5, sizeof buf);
    EXPECT_EINVAL(pggss_conn_read(NULL, buf, sizeof buf));
    EXPECT_EINVAL(pggss_conn_read(conn, NULL, sizeof buf));
    for (size_t i = 0; i < sizeof buf; i++)
        EXPECT(buf[i] == 0xA5);
    pggss_conn_free(conn);
}

static void test_pggss_conn_write(void)
{
    pggss_conn *conn = new_client();
    EXPECT_EINVAL(pggss_conn_write(NULL, "x", 1));
    EXPECT_EINVAL(pggss_conn_write(conn, NULL, 1));
    pggss_conn_free(conn);
}

static void test_pggss_conn_outcome(void)
{
    EXPECT_RESULT(pggss_conn_outcome(NULL), PGGSS_OUTCOME_PENDING);
}

static void test_pggss_conn_encryption_in_use(void)
{
    EXPECT(!pggss_conn_encryption_in_use(NULL));
}

static void test_pggss_conn_gss_context(void)
{
    EXPECT(pggss_conn_gss_context(NULL) == NULL);
}

static void test_pggss_conn_client_principal(void)
{
    pggss_conn *conn = new_client();
    char buf[64];
    size_t len = 12345;
    EXPECT_RESULT(pggss_conn_client_principal(NULL, buf, sizeof buf, &len), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_client_principal(conn, NULL, sizeof buf, &len), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_client_principal(conn, buf, sizeof buf, NULL), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT(len == 12345);
    pggss_conn_free(conn);
}

static void test_pggss_conn_client_user(void)
{
    pggss_conn *conn = new_acceptor();
    char buf[64];
    size_t len = 12345;
    EXPECT_RESULT(pggss_conn_client_user(NULL, buf, sizeof buf, &len), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_client_user(conn, NULL, sizeof buf, &len), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_client_user(conn, buf, sizeof buf, NULL), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT(len == 12345);
    pggss_conn_free(conn);
}

static void test_pggss_conn_credentials_delegated(void)
{
    EXPECT(!pggss_conn_credentials_delegated(NULL));
}

static void test_pggss_conn_max_plaintext(void)
{
    EXPECT(pggss_conn_max_plaintext(NULL) == 0);
}

static void test_pggss_conn_pending(void)
{
    EXPECT(pggss_conn_pending(NULL) == 0);
}

static void test_pggss_conn_error_message(void)
{
    const char *message = pggss_conn_error_message(NULL);
    EXPECT(message != NULL && strcmp(message, "connection pointer is NULL") == 0);
}

static void test_pggss_conn_last_result(void)
{
    EXPECT_RESULT(pggss_conn_last_result(NULL), PGGSS_RESULT_NULL_PARAMETER);
}

static void test_pggss_acceptor_set_keytab(void)
{
    pggss_conn *conn = new_acceptor();
    EXPECT_RESULT(pggss_acceptor_set_keytab(NULL, "/nonexistent.keytab"), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_acceptor_set_keytab(conn, NULL), PGGSS_RESULT_NULL_PARAMETER);
    pggss_conn_free(conn);
}

static void test_pggss_acceptor_set_service(void)
{
    pggss_conn *conn = new_acceptor();
    EXPECT_RESULT(pggss_acceptor_set_service(NULL, "postgres@localhost"), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_acceptor_set_service(conn, NULL), PGGSS_RESULT_NULL_PARAMETER);
    pggss_conn_free(conn);
}

static void test_pggss_acceptor_set_decline(void)
{
    EXPECT_RESULT(pggss_acceptor_set_decline(NULL, true), PGGSS_RESULT_NULL_PARAMETER);
}

static void test_pggss_conn_startup_packet(void)
{
    pggss_conn *conn = new_acceptor();
    pggss_startup_kind kind;
    const uint8_t *data = (const uint8_t *)"unchanged";
    size_t len = 7, packet_len = 7;
    EXPECT_RESULT(pggss_conn_startup_packet(NULL, &kind, &data, &len, &packet_len), PGGSS_RESULT_NULL_PARAMETER);
    /* Every out-pointer may be NULL; without a packet the result is INVALID_STATE. */
    EXPECT_RESULT(pggss_conn_startup_packet(conn, NULL, NULL, NULL, NULL), PGGSS_RESULT_INVALID_STATE);
    EXPECT_RESULT(pggss_conn_startup_packet(conn, &kind, &data, &len, &packet_len), PGGSS_RESULT_INVALID_STATE);
    EXPECT(strcmp((const char *)data, "unchanged") == 0 && len == 7 && packet_len == 7);
    pggss_conn_free(conn);
}

static void test_pggss_conn_store_delegated_credentials(void)
{
    pggss_conn *conn = new_acceptor();
    EXPECT_RESULT(pggss_conn_store_delegated_credentials(NULL, "MEMORY:x"), PGGSS_RESULT_NULL_PARAMETER);
    EXPECT_RESULT(pggss_conn_store_delegated_credentials(conn, NULL), PGGSS_RESULT_NULL_PARAMETER);
    pggss_conn_free(conn);
}

struct function_test {
    const char *name;
    void (*run)(void);
};

#define TEST(name) {#name, test_##name}

static const struct function_test tests[] = {
    TEST(pggss_version),
    TEST(pggss_result_text),
    TEST(pggss_conn_new),
    TEST(pggss_acceptor_new),
    TEST(pggss_conn_free),
    TEST(pggss_conn_set_param),
    TEST(pggss_conn_set_conninfo),
    TEST(pggss_conn_set_fd),
    TEST(pggss_conn_set_callbacks),
    TEST(pggss_conn_use_buffers),
    TEST(pggss_conn_feed),
    TEST(pggss_conn_feed_eof),
    TEST(pggss_conn_take_output),
    TEST(pggss_conn_output_pending),
    TEST(pggss_conn_wanted),
    TEST(pggss_conn_connect_poll),
    TEST(pggss_conn_accept_poll),
    TEST(pggss_conn_read),
    TEST(pggss_conn_write),
    TEST(pggss_conn_outcome),
    TEST(pggss_conn_encryption_in_use),
    TEST(pggss_conn_gss_context),
    TEST(pggss_conn_client_principal),
    TEST(pggss_conn_client_user),
    TEST(pggss_conn_credentials_delegated),
    TEST(pggss_conn_max_plaintext),
    TEST(pggss_conn_pending),
    TEST(pggss_conn_error_message),
    TEST(pggss_conn_last_result),
    TEST(pggss_acceptor_set_keytab),
    TEST(pggss_acceptor_set_service),
    TEST(pggss_acceptor_set_decline),
    TEST(pggss_conn_startup_packet),
    TEST(pggss_conn_store_delegated_credentials),
};

int main(int argc, char **argv)
{
    size_t count = sizeof tests / sizeof tests[0];
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < count; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned passed = 0, failed = 0;
    for (size_t i = 0; i < count; i++) {
        failures = 0;
        tests[i].run();
        printf("%s %s\n", failures == 0 ? "PASS" : "FAIL", tests[i].name);
        failures == 0 ? passed++ : failed++;
    }
    printf("%u passed, %u failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
