/*
 * pggss_conn_pending and buffered packets. pggssenc.h advises a caller to
 * check pggss_conn_pending before it waits for the socket to become
 * readable. That rule holds only if pggss_conn_pending (or the read
 * itself) accounts for every complete packet that pggssenc has already
 * taken from the socket.
 */

#define _GNU_SOURCE /* memmem */

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "testutil.h"

static uint32_t read_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Counts the complete GSSAPI packets (4-byte length, then the token) waiting in the socket. */
static unsigned complete_packets_in_socket(int fd)
{
    static uint8_t peeked[1 << 17];
    ssize_t received = recv(fd, peeked, sizeof peeked, MSG_PEEK | MSG_DONTWAIT);
    if (received <= 0) {
        return 0;
    }

    size_t offset = 0;
    unsigned count = 0;
    while ((size_t)received - offset >= 4) {
        size_t length = read_be32(peeked + offset);
        if ((size_t)received - offset - 4 < length) {
            break;
        }
        offset += 4 + length;
        count++;
    }
    return count;
}

static size_t append_query(uint8_t *buffer, const char *sql)
{
    size_t length = 4 + strlen(sql) + 1;
    buffer[0] = 'Q';
    buffer[1] = (uint8_t)(length >> 24);
    buffer[2] = (uint8_t)(length >> 16);
    buffer[3] = (uint8_t)(length >> 8);
    buffer[4] = (uint8_t)length;
    memcpy(buffer + 5, sql, strlen(sql) + 1);
    return 1 + length;
}

/*
 * Two pipelined queries make the server send two packets, one per
 * ReadyForQuery. Once both sit in the socket, a 1-byte read takes both from
 * the socket and returns the first byte. A caller that follows the header
 * (check pggss_conn_pending, then wait for readability) must then be able
 * to read both replies without waiting on the now empty socket.
 */
static void check_pending_before_poll(session *s)
{
    uint8_t queries[64];
    size_t length = append_query(queries, "SELECT 1");
    length += append_query(queries + length, "SELECT 2");
    REQUIRE_PGW(&s->w, pgw_send_raw(&s->w, queries, length));

    struct timespec pause = {0, 10 * 1000 * 1000};
    unsigned waited = 0;
    while (complete_packets_in_socket(s->fd) < 2 && waited < 500) {
        nanosleep(&pause, NULL);
        waited++;
    }
    REQUIRE_INT(complete_packets_in_socket(s->fd), 2);

    static uint8_t plaintext[1 << 16];
    ssize_t first = pggss_conn_read(s->gss, plaintext, 1);
    REQUIRE_INT(first, 1);
    CHECK(plaintext[0] == 'T');
    CHECK(socket_is_empty(s->fd));

    size_t pending = pggss_conn_pending(s->gss);
    printf("after a 1-byte read of two buffered packets: pggss_conn_pending %zu, pggss_conn_wanted %zu, "
           "socket empty %d\n",
           pending, pggss_conn_wanted(s->gss), socket_is_empty(s->fd));
    CHECK_MSG(pending > 0,
              "pggss_conn_pending is 0 and the socket is empty, but both replies are already buffered in "
              "pggssenc; a caller that now polls for readability, as the header advises, waits forever");

    /* Both replies come out of pggssenc's buffers with no socket activity:
     * read while pggss_conn_pending says there is something. */
    size_t total = 1;
    unsigned reads = 0;
    while (pggss_conn_pending(s->gss) > 0 && reads < 100) {
        ssize_t n = pggss_conn_read(s->gss, plaintext + total, sizeof plaintext - total);
        REQUIRE(n > 0);
        total += (size_t)n;
        reads++;
    }
    CHECK(socket_is_empty(s->fd));
    CHECK_INT(pggss_conn_pending(s->gss), 0);
    REQUIRE(total > 12);
    /* Each reply ends with ReadyForQuery: 'Z', length 5, status 'I'. */
    CHECK(memcmp(plaintext + total - 6, "Z\0\0\0\5I", 6) == 0);
    uint8_t *first_ready = memmem(plaintext, total, "Z\0\0\0\5I", 6);
    CHECK(first_ready != NULL && first_ready + 6 < plaintext + total);
    CHECK(memmem(plaintext, total, "\0\0\0\1" "1", 5) != NULL);
    CHECK(memmem(plaintext, total, "\0\0\0\1" "2", 5) != NULL);
}

int main(void)
{
    session s;

    s.fd = connect_tcp_or_exit();
    REQUIRE_INT(pgw_set_nonblocking(s.fd, 1), 0);
    s.gss = new_gss_conn("host=localhost gssencmode=require", s.fd);
    REQUIRE_INT(pgw_init(&s.w, s.gss, s.fd), 0);
    s.w.timeout_ms = 10000;
    REQUIRE_PGW(&s.w, pgw_negotiate(&s.w, NULL));
    REQUIRE_INT(pggss_conn_outcome(s.gss), PGGSS_OUTCOME_ENCRYPTED);
    REQUIRE_PGW(&s.w, pgw_startup(&s.w, fixture_env("PGUSER"), fixture_env("PGDATABASE"), "pending_before_poll"));

    check_pending_before_poll(&s);

    close_session(&s);
    return test_finish();
}
