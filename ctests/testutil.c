#define _POSIX_C_SOURCE 200809L

#include "testutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

unsigned test_checks;
unsigned test_failures;

static bool report(const char *file, int line, bool fatal, bool passed)
{
    test_checks++;
    if (passed) {
        return true;
    }
    test_failures++;
    if (fatal) {
        printf("stopping after %s:%d because later checks depend on it\n", file, line);
        fflush(stdout);
        exit(test_finish());
    }
    return false;
}

bool check_true(const char *file, int line, bool fatal, bool condition, const char *expression)
{
    if (!condition) {
        printf("check failed: %s:%d: %s is false\n", file, line, expression);
    }
    return report(file, line, fatal, condition);
}

bool check_message(const char *file, int line, bool fatal, bool condition, const char *format, ...)
{
    if (!condition) {
        va_list args;
        va_start(args, format);
        printf("check failed: %s:%d: ", file, line);
        vprintf(format, args);
        printf("\n");
        va_end(args);
    }
    return report(file, line, fatal, condition);
}

bool check_int(const char *file, int line, bool fatal, const char *expression, long long actual, long long expected)
{
    bool passed = actual == expected;
    if (!passed) {
        printf("check failed: %s:%d: %s is %lld, expected %lld\n", file, line, expression, actual, expected);
    }
    return report(file, line, fatal, passed);
}

bool check_str(const char *file, int line, bool fatal, const char *expression, const char *actual,
               const char *expected)
{
    bool passed = actual != NULL && expected != NULL && strcmp(actual, expected) == 0;
    if (!passed) {
        printf("check failed: %s:%d: %s is \"%s\", expected \"%s\"\n", file, line, expression,
               actual ? actual : "(null)", expected ? expected : "(null)");
    }
    return report(file, line, fatal, passed);
}

bool check_contains(const char *file, int line, bool fatal, const char *expression, const char *actual,
                    const char *fragment)
{
    bool passed = actual != NULL && strstr(actual, fragment) != NULL;
    if (!passed) {
        printf("check failed: %s:%d: %s is \"%s\", which does not contain \"%s\"\n", file, line, expression,
               actual ? actual : "(null)", fragment);
    }
    return report(file, line, fatal, passed);
}

bool check_prefix(const char *file, int line, bool fatal, const char *expression, const char *actual,
                  const char *prefix)
{
    bool passed = actual != NULL && strncmp(actual, prefix, strlen(prefix)) == 0;
    if (!passed) {
        printf("check failed: %s:%d: %s is \"%s\", which does not start with \"%s\"\n", file, line, expression,
               actual ? actual : "(null)", prefix);
    }
    return report(file, line, fatal, passed);
}

bool check_bytes(const char *file, int line, bool fatal, const char *expression, const void *actual,
                 size_t actual_length, const void *expected, size_t expected_length)
{
    const uint8_t *a = actual;
    const uint8_t *b = expected;
    size_t common = actual_length < expected_length ? actual_length : expected_length;
    size_t offset = 0;

    while (offset < common && a[offset] == b[offset]) {
        offset++;
    }
    bool passed = actual_length == expected_length && offset == common;
    if (!passed) {
        printf("check failed: %s:%d: %s has %zu bytes, expected %zu, and they first differ at offset %zu\n", file,
               line, expression, actual_length, expected_length, offset);
    }
    return report(file, line, fatal, passed);
}

bool check_pgw(const char *file, int line, bool fatal, const char *expression, pgw_status status,
               const pgw_conn *w)
{
    bool passed = status == PGW_OK;
    if (!passed) {
        printf("check failed: %s:%d: %s returned pgw_status %d: %s\n", file, line, expression, (int)status,
               w->error);
    }
    return report(file, line, fatal, passed);
}

int test_finish(void)
{
    printf("%u checks, %u failed\n", test_checks, test_failures);
    fflush(stdout);
    return test_failures == 0 ? 0 : 1;
}

const char *fixture_env(const char *name)
{
    const char *value = getenv(name);
    if (value == NULL || value[0] == '\0') {
        printf("check failed: environment variable %s is not set; run the test under tests/fixture/pgkrb run\n",
               name);
        test_failures++;
        exit(test_finish());
    }
    return value;
}

int connect_tcp_or_exit(void)
{
    char error[512];
    int fd = pgw_connect_tcp(fixture_env("PGHOSTADDR"), fixture_env("PGPORT"), error, sizeof error);
    if (fd < 0) {
        printf("check failed: %s\n", error);
        test_failures++;
        exit(test_finish());
    }
    return fd;
}

int connect_unix_or_exit(void)
{
    char error[512];
    int fd = pgw_connect_unix(fixture_env("PGGSS_SOCKDIR"), fixture_env("PGPORT"), error, sizeof error);
    if (fd < 0) {
        printf("check failed: %s\n", error);
        test_failures++;
        exit(test_finish());
    }
    return fd;
}

pggss_conn *new_gss_conn(const char *conninfo, int fd)
{
    pggss_conn *gss = NULL;
    REQUIRE_INT(pggss_conn_new(&gss), PGGSS_RESULT_OK);
    REQUIRE(gss != NULL);
    if (!check_int(__FILE__, __LINE__, true, "pggss_conn_set_conninfo(gss, conninfo)",
                   pggss_conn_set_conninfo(gss, conninfo), PGGSS_RESULT_OK)) {
        printf("message: %s\n", pggss_conn_error_message(gss));
    }
    REQUIRE_INT(pggss_conn_set_fd(gss, fd), PGGSS_RESULT_OK);
    return gss;
}

void open_encrypted_session(session *s, const char *extra_conninfo)
{
    char conninfo[512];

    snprintf(conninfo, sizeof conninfo, "host=localhost gssencmode=require %s", extra_conninfo ? extra_conninfo : "");
    s->fd = connect_tcp_or_exit();
    s->gss = new_gss_conn(conninfo, s->fd);
    REQUIRE_INT(pgw_init(&s->w, s->gss, s->fd), 0);
    REQUIRE_PGW(&s->w, pgw_negotiate(&s->w, NULL));
    REQUIRE_INT(pggss_conn_outcome(s->gss), PGGSS_OUTCOME_ENCRYPTED);
    REQUIRE_PGW(&s->w, pgw_startup(&s->w, fixture_env("PGUSER"), fixture_env("PGDATABASE"), "pggssenc-ctests"));
}

void close_session(session *s)
{
    if (!s->w.broken) {
        CHECK_PGW(&s->w, pgw_terminate(&s->w));
    }
    pgw_destroy(&s->w);
    pggss_conn_free(s->gss);
    close(s->fd);
    s->gss = NULL;
    s->fd = -1;
}

void check_pg_stat_gssapi(pgw_conn *w, bool expect_encrypted)
{
    pgw_result result = {0};
    const char *sql = "SELECT pid = pg_backend_pid(), gss_authenticated, encrypted, principal "
                      "FROM pg_stat_gssapi WHERE pid = pg_backend_pid()";

    if (!CHECK_PGW(w, pgw_query_collect(w, sql, &result))) {
        pgw_result_clear(&result);
        return;
    }
    if (CHECK_INT(result.row_count, 1) && CHECK_INT(result.column_count, 4)) {
        char **row = result.rows[0];
        CHECK_STR(row[0], "t");
        CHECK_STR(row[1], expect_encrypted ? "t" : "f");
        CHECK_STR(row[2], expect_encrypted ? "t" : "f");
        if (expect_encrypted) {
            CHECK_STR(row[3], fixture_env("PGGSS_PRINCIPAL"));
        } else {
            CHECK(row[3] == NULL);
        }
    }
    CHECK_STR(result.command_tag, "SELECT 1");
    pgw_result_clear(&result);
}

bool socket_is_empty(int fd)
{
    char byte;
    ssize_t received = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

uint64_t fnv1a64(uint64_t hash, const void *data, size_t length)
{
    const uint8_t *bytes = data;
    for (size_t i = 0; i < length; i++) {
        hash ^= bytes[i];
        hash *= UINT64_C(0x100000001b3);
    }
    return hash;
}

char *build_series_copy_text(unsigned rows, unsigned width, size_t *length)
{
    /* Each line is the number (at most 10 digits), a tab, the text and a newline. */
    size_t capacity = (size_t)rows * (width + 12) + 1;
    char *text = malloc(capacity);
    if (text == NULL) {
        return NULL;
    }

    size_t used = 0;
    for (unsigned i = 1; i <= rows; i++) {
        used += (size_t)snprintf(text + used, capacity - used, "%u\t", i);
        memset(text + used, 'y', width);
        used += width;
        text[used++] = '\n';
    }
    *length = used;
    return text;
}

void format_series_copy_sql(char *sql, size_t size, unsigned rows, unsigned width)
{
    snprintf(sql, size, "COPY (SELECT i, repeat('y', %u) FROM generate_series(1, %u) i) TO STDOUT", width, rows);
}

void copy_buffer_init(copy_buffer *buffer)
{
    memset(buffer, 0, sizeof *buffer);
    buffer->hash = FNV1A64_OFFSET;
}

void copy_buffer_free(copy_buffer *buffer)
{
    free(buffer->data);
    memset(buffer, 0, sizeof *buffer);
}

int copy_buffer_sink(void *userdata, const uint8_t *data, size_t length)
{
    copy_buffer *buffer = userdata;

    if (buffer->capacity - buffer->length < length) {
        size_t capacity = buffer->capacity ? buffer->capacity * 2 : 1 << 20;
        while (capacity - buffer->length < length) {
            capacity *= 2;
        }
        uint8_t *grown = realloc(buffer->data, capacity);
        if (grown == NULL) {
            return -1;
        }
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->length, data, length);
    buffer->length += length;
    buffer->hash = fnv1a64(buffer->hash, data, length);
    buffer->messages++;
    return 0;
}
