/*
 * pggss_conn_set_callbacks with callbacks that wrap a TCP socket. Plain
 * callbacks carry a query and a COPY of more than 10 MiB. Then callbacks
 * that move one byte per call and report EAGAIN on every other call force
 * partial reads and writes, and the write retry rule, against the real
 * server.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* 100000 lines of about 108 bytes: about 10.3 MiB. */
#define LARGE_ROWS 100000
#define LARGE_WIDTH 100
#define MIN_LARGE_BYTES (10u * 1024 * 1024)

/* About 100 KiB each way for the one-byte transport. */
#define SMALL_ROWS 1000
#define SMALL_WIDTH 95

#define TRANSPORT_MAGIC 0x70677373u

typedef struct {
    unsigned magic;
    int fd;
    /* Move at most one byte per call, and report EAGAIN on every other call. */
    bool trickle;
    bool skip_next_read;
    bool skip_next_write;

    uint64_t read_calls;
    uint64_t write_calls;
    uint64_t read_would_block;
    uint64_t write_would_block;
    uint64_t bytes_read;
    uint64_t bytes_written;
    size_t largest_read;
    size_t largest_write;
    uint64_t end_of_stream;
} socket_transport;

static ssize_t read_callback(void *userdata, uint8_t *buf, size_t len, int *err)
{
    socket_transport *t = userdata;
    /* pggssenc must pass the userdata unchanged; anything else fails the transfer. */
    if (t == NULL || t->magic != TRANSPORT_MAGIC) {
        *err = EINVAL;
        return -1;
    }
    t->read_calls++;

    if (t->trickle) {
        t->skip_next_read = !t->skip_next_read;
        if (t->skip_next_read) {
            t->read_would_block++;
            *err = EAGAIN;
            return -1;
        }
        len = len < 1 ? len : 1;
    }

    ssize_t received = recv(t->fd, buf, len, 0);
    if (received < 0) {
        *err = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            t->read_would_block++;
        }
        return -1;
    }
    if (received == 0) {
        t->end_of_stream++;
    }
    t->bytes_read += (uint64_t)received;
    if ((size_t)received > t->largest_read) {
        t->largest_read = (size_t)received;
    }
    return received;
}

static ssize_t write_callback(void *userdata, const uint8_t *buf, size_t len, int *err)
{
    socket_transport *t = userdata;
    if (t == NULL || t->magic != TRANSPORT_MAGIC) {
        *err = EINVAL;
        return -1;
    }
    t->write_calls++;

    if (t->trickle) {
        t->skip_next_write = !t->skip_next_write;
        if (t->skip_next_write) {
            t->write_would_block++;
            *err = EAGAIN;
            return -1;
        }
        len = len < 1 ? len : 1;
    }

    ssize_t sent = send(t->fd, buf, len, MSG_NOSIGNAL);
    if (sent < 0) {
        *err = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            t->write_would_block++;
        }
        return -1;
    }
    t->bytes_written += (uint64_t)sent;
    if ((size_t)sent > t->largest_write) {
        t->largest_write = (size_t)sent;
    }
    return sent;
}

/* Connects, installs the callbacks and runs negotiation and startup. */
static void open_callback_session(session *s, socket_transport *t, bool trickle)
{
    memset(t, 0, sizeof *t);
    t->magic = TRANSPORT_MAGIC;
    t->trickle = trickle;
    t->fd = connect_tcp_or_exit();
    s->fd = t->fd;
    if (trickle) {
        REQUIRE_INT(pgw_set_nonblocking(t->fd, 1), 0);
    }

    REQUIRE_INT(pggss_conn_new(&s->gss), PGGSS_RESULT_OK);
    REQUIRE_INT(pggss_conn_set_conninfo(s->gss, "host=localhost gssencmode=require"), PGGSS_RESULT_OK);
    REQUIRE_INT(pggss_conn_set_callbacks(s->gss, read_callback, write_callback, t), PGGSS_RESULT_OK);
    REQUIRE_INT(pgw_init(&s->w, s->gss, t->fd), 0);
    s->w.timeout_ms = 20000;

    unsigned polls = 0;
    REQUIRE_PGW(&s->w, pgw_negotiate(&s->w, &polls));
    printf("%s callbacks: negotiation took %u connect_poll calls, %llu read and %llu write callback calls\n",
           trickle ? "one-byte" : "plain", polls, (unsigned long long)t->read_calls,
           (unsigned long long)t->write_calls);
    REQUIRE_INT(pggss_conn_outcome(s->gss), PGGSS_OUTCOME_ENCRYPTED);
    if (trickle) {
        /* Each EAGAIN from a callback surfaces as READING or WRITING. */
        CHECK(polls > 2);
    }
    REQUIRE_PGW(&s->w, pgw_startup(&s->w, fixture_env("PGUSER"), fixture_env("PGDATABASE"), "callback_transport"));
}

static void check_connection_properties(pggss_conn *gss)
{
    char principal[128];
    size_t length = 0;

    CHECK(pggss_conn_encryption_in_use(gss));
    CHECK(pggss_conn_gss_context(gss) != NULL);
    CHECK(pggss_conn_max_plaintext(gss) > 0);
    CHECK(pggss_conn_max_plaintext(gss) < PGGSS_MAX_PACKET_SIZE);
    CHECK_INT(pggss_conn_client_principal(gss, principal, sizeof principal, &length), PGGSS_RESULT_OK);
    CHECK_STR(principal, fixture_env("PGGSS_PRINCIPAL"));
}

static void check_copy_out(session *s, unsigned rows, unsigned width)
{
    size_t expected_length;
    char *expected = build_series_copy_text(rows, width, &expected_length);
    REQUIRE(expected != NULL);
    char sql[256];
    format_series_copy_sql(sql, sizeof sql, rows, width);

    copy_buffer received;
    copy_buffer_init(&received);
    CHECK_PGW(&s->w, pgw_copy_out(&s->w, sql, copy_buffer_sink, &received));
    printf("COPY TO STDOUT: %zu bytes, FNV-1a 64 %016llx\n", received.length, (unsigned long long)received.hash);
    CHECK_INT(received.length, expected_length);
    CHECK(received.hash == fnv1a64(FNV1A64_OFFSET, expected, expected_length));
    CHECK_BYTES(received.data, received.length, expected, expected_length);

    copy_buffer_free(&received);
    free(expected);
}

typedef struct {
    const char *data;
    size_t length;
    size_t offset;
} line_source;

/* Supplies one line per chunk. */
static int next_line(void *userdata, const uint8_t **data, size_t *length)
{
    line_source *source = userdata;
    if (source->offset == source->length) {
        return 0;
    }
    const char *start = source->data + source->offset;
    const char *newline = memchr(start, '\n', source->length - source->offset);
    size_t size = newline ? (size_t)(newline - start) + 1 : source->length - source->offset;
    *data = (const uint8_t *)start;
    *length = size;
    source->offset += size;
    return 1;
}

static void check_copy_in(session *s, unsigned rows, unsigned width)
{
    size_t text_length;
    char *text = build_series_copy_text(rows, width, &text_length);
    REQUIRE(text != NULL);

    CHECK_PGW(&s->w, pgw_query(&s->w, "CREATE TEMP TABLE trickle_sink (i int, s text)", NULL));
    line_source source = {text, text_length, 0};
    CHECK_PGW(&s->w, pgw_copy_in(&s->w, "COPY trickle_sink FROM STDIN", next_line, &source));

    char expected[128];
    char value[128];
    snprintf(expected, sizeof expected, "COPY %u", rows);
    CHECK_STR(s->w.command_tag, expected);
    if (CHECK_PGW(&s->w, pgw_query_value(&s->w,
                                         "SELECT count(*) || ' ' || sum(i) || ' ' || "
                                         "bool_and(s = repeat('y', length(s))) || ' ' || min(length(s)) "
                                         "FROM trickle_sink",
                                         value, sizeof value))) {
        snprintf(expected, sizeof expected, "%u %llu true %u", rows, (unsigned long long)rows * (rows + 1) / 2,
                 width);
        CHECK_STR(value, expected);
    }
    free(text);
}

static void close_callback_session(session *s, socket_transport *t)
{
    /* After Terminate the server closes the connection, so the read callback gets the end of the stream. */
    CHECK_PGW(&s->w, pgw_terminate(&s->w));
    char byte;
    ssize_t received;
    do {
        received = pggss_conn_read(s->gss, &byte, 1);
    } while (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && t->trickle);
    CHECK_INT(received, 0);
    CHECK(t->end_of_stream >= 1);
    s->w.broken = 1;
    close_session(s);
}

int main(void)
{
    session s;
    socket_transport t;

    /* Plain callbacks on a blocking socket. */
    open_callback_session(&s, &t, false);
    check_connection_properties(s.gss);
    check_pg_stat_gssapi(&s.w, true);
    CHECK(LARGE_ROWS * (LARGE_WIDTH + 7ull) >= MIN_LARGE_BYTES);
    check_copy_out(&s, LARGE_ROWS, LARGE_WIDTH);
    printf("plain callbacks: %llu bytes read in %llu calls, %llu bytes written in %llu calls\n",
           (unsigned long long)t.bytes_read, (unsigned long long)t.read_calls, (unsigned long long)t.bytes_written,
           (unsigned long long)t.write_calls);
    /* Encrypted packets are larger than the plaintext they carry. */
    CHECK(t.bytes_read > MIN_LARGE_BYTES);
    CHECK(s.w.stats.bytes_read > MIN_LARGE_BYTES);
    CHECK(t.bytes_read > s.w.stats.bytes_read);
    close_callback_session(&s, &t);

    /* One byte per call and EAGAIN on every other call, on a non-blocking socket. */
    open_callback_session(&s, &t, true);
    check_connection_properties(s.gss);
    check_pg_stat_gssapi(&s.w, true);
    check_copy_out(&s, SMALL_ROWS, SMALL_WIDTH);
    check_copy_in(&s, SMALL_ROWS, SMALL_WIDTH);
    printf("one-byte callbacks: %llu read calls (%llu EAGAIN), %llu write calls (%llu EAGAIN); "
           "pgwire saw %llu read and %llu write EAGAINs\n",
           (unsigned long long)t.read_calls, (unsigned long long)t.read_would_block,
           (unsigned long long)t.write_calls, (unsigned long long)t.write_would_block,
           (unsigned long long)s.w.stats.read_would_block, (unsigned long long)s.w.stats.write_would_block);
    CHECK_INT(t.largest_read, 1);
    CHECK_INT(t.largest_write, 1);
    CHECK(t.bytes_read > SMALL_ROWS * (SMALL_WIDTH + 2ull));
    CHECK(t.bytes_written > SMALL_ROWS * (SMALL_WIDTH + 2ull));
    CHECK(s.w.stats.read_would_block > 0);
    CHECK(s.w.stats.write_would_block > 0);
    close_callback_session(&s, &t);

    return test_finish();
}
