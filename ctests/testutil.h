/*
 * Checks and fixture helpers shared by the C tests. Each test is one
 * program that runs inside `tests/fixture/pgkrb run` and reads the
 * fixture's environment (PGHOSTADDR, PGPORT, PGGSS_SOCKDIR, ...).
 *
 * A failed check prints "check failed: FILE:LINE: ..." and the test goes
 * on; a failed REQUIRE check also ends the test. test_finish returns the
 * exit status: 0 when every check passed.
 */

#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pggssenc.h"
#include "pgwire.h"

extern unsigned test_checks;
extern unsigned test_failures;

bool check_true(const char *file, int line, bool fatal, bool condition, const char *expression);
bool check_message(const char *file, int line, bool fatal, bool condition, const char *format, ...)
    __attribute__((format(printf, 5, 6)));
bool check_int(const char *file, int line, bool fatal, const char *expression, long long actual, long long expected);
bool check_str(const char *file, int line, bool fatal, const char *expression, const char *actual,
               const char *expected);
bool check_contains(const char *file, int line, bool fatal, const char *expression, const char *actual,
                    const char *fragment);
bool check_prefix(const char *file, int line, bool fatal, const char *expression, const char *actual,
                  const char *prefix);
bool check_bytes(const char *file, int line, bool fatal, const char *expression, const void *actual,
                 size_t actual_length, const void *expected, size_t expected_length);
bool check_pgw(const char *file, int line, bool fatal, const char *expression, pgw_status status,
               const pgw_conn *w);

#define CHECK(cond) check_true(__FILE__, __LINE__, false, (cond), #cond)
#define REQUIRE(cond) check_true(__FILE__, __LINE__, true, (cond), #cond)
/* Checks `cond` and prints the printf-style explanation when it is false. */
#define CHECK_MSG(cond, ...) check_message(__FILE__, __LINE__, false, (cond), __VA_ARGS__)
#define CHECK_INT(actual, expected) \
    check_int(__FILE__, __LINE__, false, #actual, (long long)(actual), (long long)(expected))
#define REQUIRE_INT(actual, expected) \
    check_int(__FILE__, __LINE__, true, #actual, (long long)(actual), (long long)(expected))
#define CHECK_STR(actual, expected) check_str(__FILE__, __LINE__, false, #actual, (actual), (expected))
#define CHECK_CONTAINS(actual, fragment) check_contains(__FILE__, __LINE__, false, #actual, (actual), (fragment))
#define CHECK_PREFIX(actual, prefix) check_prefix(__FILE__, __LINE__, false, #actual, (actual), (prefix))
/* Checks that two byte strings are equal, and prints the first offset where they differ if not. */
#define CHECK_BYTES(actual, actual_length, expected, expected_length) \
    check_bytes(__FILE__, __LINE__, false, #actual, (actual), (actual_length), (expected), (expected_length))
/* Checks that a pgwire call returned PGW_OK, and prints pgwire's error if not. */
#define CHECK_PGW(w, call) check_pgw(__FILE__, __LINE__, false, #call, (call), (w))
#define REQUIRE_PGW(w, call) check_pgw(__FILE__, __LINE__, true, #call, (call), (w))

/* Prints the check summary and returns the exit status. */
int test_finish(void);

/* Returns an environment variable of the fixture, or ends the test when it is missing. */
const char *fixture_env(const char *name);

/* Connects TCP to $PGHOSTADDR:$PGPORT, or ends the test. */
int connect_tcp_or_exit(void);

/* Connects to $PGGSS_SOCKDIR/.s.PGSQL.$PGPORT, or ends the test. */
int connect_unix_or_exit(void);

/*
 * Creates a pggssenc connection with `conninfo` on socket `fd`, or ends
 * the test.
 */
pggss_conn *new_gss_conn(const char *conninfo, int fd);

/* An open PostgreSQL session: socket, pggssenc connection and pgwire state. */
typedef struct {
    int fd;
    pggss_conn *gss;
    pgw_conn w;
} session;

/*
 * Connects TCP, negotiates encryption with "host=localhost
 * gssencmode=require " followed by `extra_conninfo`, and sends the
 * StartupMessage for $PGUSER and $PGDATABASE. Ends the test on failure.
 */
void open_encrypted_session(session *s, const char *extra_conninfo);

/* Sends Terminate and releases everything the session holds. */
void close_session(session *s);

/*
 * Checks that pg_stat_gssapi shows this backend as GSS-authenticated
 * (`expect_encrypted`) and encrypted with principal $PGGSS_PRINCIPAL, or
 * neither with no principal.
 */
void check_pg_stat_gssapi(pgw_conn *w, bool expect_encrypted);

/* Returns true when `fd` has no bytes to read now (a non-blocking check). */
bool socket_is_empty(int fd);

#define FNV1A64_OFFSET UINT64_C(0xcbf29ce484222325)

/* Continues an FNV-1a 64-bit hash over `length` bytes. */
uint64_t fnv1a64(uint64_t hash, const void *data, size_t length);

/*
 * Builds the COPY text that the server sends for
 * "COPY (SELECT i, repeat('y', width) FROM generate_series(1, rows) i)
 * TO STDOUT", into a new buffer. Stores its length in `*length`.
 */
char *build_series_copy_text(unsigned rows, unsigned width, size_t *length);

/* Formats the COPY statement whose output build_series_copy_text builds. */
void format_series_copy_sql(char *sql, size_t size, unsigned rows, unsigned width);

/* Collects COPY data: a growing buffer with a running checksum. */
typedef struct {
    uint8_t *data;
    size_t length;
    size_t capacity;
    uint64_t hash;
    uint64_t messages;
} copy_buffer;

void copy_buffer_init(copy_buffer *buffer);
void copy_buffer_free(copy_buffer *buffer);

/* A pgw_copy_sink that appends to a copy_buffer. */
int copy_buffer_sink(void *userdata, const uint8_t *data, size_t length);

#endif /* TESTUTIL_H */
