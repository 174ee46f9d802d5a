/*
 * A non-blocking socket driven by poll(2): negotiation through READING and
 * WRITING, EAGAIN on reads and writes, a COPY of more than 5 MiB each way,
 * and an event loop that checks pggss_conn_pending before it waits for
 * readability.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* 60000 lines of about 107 bytes: about 6.1 MiB of COPY text. */
#define SERIES_ROWS 60000
#define SERIES_WIDTH 100
#define MIN_COPY_BYTES (5u * 1024 * 1024)

static int open_nonblocking_socket(void)
{
    int fd = connect_tcp_or_exit();
    REQUIRE_INT(pgw_set_nonblocking(fd, 1), 0);
    return fd;
}

/* Runs pggss_conn_connect_poll to its end with an explicit poll(2) loop. */
static void negotiate_with_poll(pggss_conn *gss, int fd)
{
    unsigned reading = 0;
    unsigned writing = 0;
    unsigned calls = 0;

    for (;;) {
        int status = pggss_conn_connect_poll(gss);
        calls++;
        REQUIRE(calls < 1000);
        if (status == PGGSS_POLLING_STATUS_OK) {
            break;
        }
        if (!CHECK(status == PGGSS_POLLING_STATUS_READING || status == PGGSS_POLLING_STATUS_WRITING)) {
            printf("connect_poll returned %d: %s\n", status, pggss_conn_error_message(gss));
            exit(test_finish());
        }

        /* While negotiation runs, nothing about the connection is settled. */
        CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_PENDING);
        CHECK(!pggss_conn_encryption_in_use(gss));

        struct pollfd pfd = {.fd = fd, .events = status == PGGSS_POLLING_STATUS_READING ? POLLIN : POLLOUT};
        if (status == PGGSS_POLLING_STATUS_READING) {
            reading++;
        } else {
            writing++;
        }
        REQUIRE_INT(poll(&pfd, 1, 10000), 1);
    }

    /*
     * Usually the first call returns READING while the server prepares its
     * response, but a fast server can respond before pggssenc reads, so the
     * count is reported and not checked. test_parameter_errors.c checks
     * READING against a peer that never responds.
     */
    printf("negotiation: %u connect_poll calls, %u READING, %u WRITING\n", calls, reading, writing);
    CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_ENCRYPTED);
    CHECK(pggss_conn_encryption_in_use(gss));
    CHECK_INT(pggss_conn_last_result(gss), PGGSS_RESULT_OK);
}

static void open_nonblocking_session(session *s)
{
    s->fd = open_nonblocking_socket();
    s->gss = new_gss_conn("host=localhost gssencmode=require", s->fd);
    negotiate_with_poll(s->gss, s->fd);
    REQUIRE_INT(pgw_init(&s->w, s->gss, s->fd), 0);
    s->w.timeout_ms = 10000;
    REQUIRE_PGW(&s->w, pgw_startup(&s->w, fixture_env("PGUSER"), fixture_env("PGDATABASE"), "nonblocking_poll"));
}

static void check_read_would_block(session *s)
{
    char buffer[64];

    /* The server has nothing to send between ReadyForQuery and the next query. */
    errno = 0;
    CHECK_INT(pggss_conn_read(s->gss, buffer, sizeof buffer), -1);
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK_INT(pggss_conn_last_result(s->gss), PGGSS_RESULT_WOULD_BLOCK);
    CHECK_INT(pggss_conn_pending(s->gss), 0);
    CHECK(pggss_conn_encryption_in_use(s->gss));
}

typedef struct {
    const uint8_t *data;
    size_t length;
    size_t offset;
} fixed_chunks;

static int next_fixed_chunk(void *userdata, const uint8_t **data, size_t *length)
{
    fixed_chunks *source = userdata;
    if (source->offset == source->length) {
        return 0;
    }
    size_t size = source->length - source->offset;
    if (size > 100000) {
        size = 100000;
    }
    *data = source->data + source->offset;
    *length = size;
    source->offset += size;
    return 1;
}

/*
 * COPY FROM STDIN into a table whose trigger stalls the server for 0.5 s
 * at the first row. The data keeps coming meanwhile, so the socket fills
 * and pggss_conn_write must report EAGAIN, and pgwire must retry.
 */
static void check_copy_in_with_full_socket(session *s, const char *text, size_t text_length)
{
    /* A small send buffer keeps the kernel from absorbing megabytes. */
    int send_buffer = 16384;
    CHECK_INT(setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer), 0);

    REQUIRE_PGW(&s->w, pgw_query(&s->w, "CREATE TEMP TABLE slow_sink (i int, s text)", NULL));
    REQUIRE_PGW(&s->w, pgw_query(&s->w,
                                 "CREATE OR REPLACE FUNCTION stall_first_row() RETURNS trigger LANGUAGE plpgsql AS "
                                 "$$BEGIN IF NEW.i = 1 THEN PERFORM pg_sleep(0.5); END IF; RETURN NEW; END$$",
                                 NULL));
    REQUIRE_PGW(&s->w, pgw_query(&s->w,
                                 "CREATE TRIGGER stall BEFORE INSERT ON slow_sink "
                                 "FOR EACH ROW EXECUTE FUNCTION stall_first_row()",
                                 NULL));

    fixed_chunks source = {(const uint8_t *)text, text_length, 0};
    uint64_t would_block_before = s->w.stats.write_would_block;
    CHECK_PGW(&s->w, pgw_copy_in(&s->w, "COPY slow_sink FROM STDIN", next_fixed_chunk, &source));
    uint64_t would_block = s->w.stats.write_would_block - would_block_before;
    printf("COPY FROM STDIN: %zu bytes, %llu writes returned EAGAIN\n", text_length,
           (unsigned long long)would_block);
    CHECK(would_block > 0);

    char expected[64];
    char value[64];
    snprintf(expected, sizeof expected, "COPY %d", SERIES_ROWS);
    CHECK_STR(s->w.command_tag, expected);
    if (CHECK_PGW(&s->w, pgw_query_value(&s->w,
                                         "SELECT count(*) || ' ' || sum(length(s)) || ' ' || sum(i) FROM slow_sink",
                                         value, sizeof value))) {
        snprintf(expected, sizeof expected, "%d %d %lld", SERIES_ROWS, SERIES_ROWS * SERIES_WIDTH,
                 (long long)SERIES_ROWS * (SERIES_ROWS + 1) / 2);
        CHECK_STR(value, expected);
    }
}

/* The server sleeps before it replies, so pgwire's first read must get EAGAIN and wait in poll(2). */
static void check_query_waits(session *s)
{
    char value[16];
    uint64_t would_block_before = s->w.stats.read_would_block;
    uint64_t polls_before = s->w.stats.polls;

    if (CHECK_PGW(&s->w, pgw_query_value(&s->w, "SELECT pg_sleep(0.2) IS NULL", value, sizeof value))) {
        CHECK_STR(value, "f");
    }
    CHECK(s->w.stats.read_would_block > would_block_before);
    CHECK(s->w.stats.polls > polls_before);
}

/* Reads a value one plaintext byte at a time, so that most reads take bytes pggssenc has already decrypted. */
static void check_small_reads_use_pending(session *s)
{
    char value[20001];
    uint64_t pending_before = s->w.stats.pending_reads;

    s->w.read_chunk = 1;
    if (CHECK_PGW(&s->w, pgw_query_value(&s->w, "SELECT repeat('z', 20000)", value, sizeof value))) {
        CHECK_INT(strlen(value), 20000);
        CHECK_INT(strspn(value, "z"), 20000);
    }
    s->w.read_chunk = SIZE_MAX;
    printf("1-byte reads made while pggss_conn_pending was nonzero: %llu\n",
           (unsigned long long)(s->w.stats.pending_reads - pending_before));
    CHECK(s->w.stats.pending_reads - pending_before > 20000);
}

static void check_copy_out(session *s, const char *expected, size_t expected_length)
{
    char sql[256];
    copy_buffer received;

    copy_buffer_init(&received);
    format_series_copy_sql(sql, sizeof sql, SERIES_ROWS, SERIES_WIDTH);
    uint64_t would_block_before = s->w.stats.read_would_block;
    CHECK_PGW(&s->w, pgw_copy_out(&s->w, sql, copy_buffer_sink, &received));
    printf("COPY TO STDOUT: %zu bytes, %llu reads returned EAGAIN, %llu polls so far\n", received.length,
           (unsigned long long)(s->w.stats.read_would_block - would_block_before),
           (unsigned long long)s->w.stats.polls);
    CHECK_INT(received.length, expected_length);
    CHECK(received.hash == fnv1a64(FNV1A64_OFFSET, expected, expected_length));
    CHECK_BYTES(received.data, received.length, expected, expected_length);
    copy_buffer_free(&received);
}

int main(void)
{
    size_t text_length;
    char *text = build_series_copy_text(SERIES_ROWS, SERIES_WIDTH, &text_length);
    REQUIRE(text != NULL);
    REQUIRE(text_length >= MIN_COPY_BYTES);

    /* First session: pgwire reads first and polls only after EAGAIN. */
    session s;
    open_nonblocking_session(&s);
    check_pg_stat_gssapi(&s.w, true);
    check_read_would_block(&s);
    check_copy_in_with_full_socket(&s, text, text_length);
    check_small_reads_use_pending(&s);
    check_copy_out(&s, text, text_length);
    check_query_waits(&s);
    close_session(&s);

    /*
     * Second session: an event loop that polls before every read unless
     * pggss_conn_pending is nonzero, as pggssenc.h advises.
     */
    open_nonblocking_session(&s);
    s.w.poll_before_read = 1;
    check_copy_out(&s, text, text_length);
    close_session(&s);

    free(text);
    return test_finish();
}
