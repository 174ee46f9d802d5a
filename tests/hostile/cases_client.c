/*
 * Hostile servers against the library in the client role. The library
 * connects over a blocking socketpair with host=localhost and
 * gssencmode=require (prefer where a case names it). A fake server thread,
 * with an acceptor context from the server keytab where it needs one,
 * responds on the other end.
 *
 * Fragments of GSSAPI status text are those of MIT krb5 1.20 (Debian 12);
 * another krb5 release may word them differently.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

/* --- running a case ---------------------------------------------------- */

struct client_run {
    int fds[2];
    int flags;
    pggss_conn *conn;
    struct peer peer;
};

static void client_begin(struct client_run *r, peer_fn fn, const char *gssencmode, const void *data, size_t len,
                          long param)
{
    memset(r, 0, sizeof *r);
    make_socketpair(r->fds);
    r->flags = fcntl(r->fds[0], F_GETFL);
    r->peer.fd = r->fds[1];
    r->peer.run = fn;
    r->peer.data = data;
    r->peer.data_len = len;
    r->peer.param = param;
    peer_start(&r->peer);
    r->conn = library_client(r->fds[0], gssencmode);
}

/* Polls once (the socket blocks, so one call finishes) and joins the peer. */
static int client_poll(struct client_run *r)
{
    int status = pggss_conn_connect_poll(r->conn);
    peer_finish(&r->peer);
    return status;
}

static void client_end(struct client_run *r)
{
    expect_fd_untouched(r->fds[0], r->flags);
    pggss_conn_free(r->conn);
    close(r->fds[0]);
    close(r->fds[1]);
}

/* Runs a case whose negotiation must fail, and checks the common outcome. */
static void expect_client_failure(peer_fn fn, const char *gssencmode, const void *data, size_t len, long param,
                                  pggss_result expected, const char *fragment)
{
    struct client_run r;
    client_begin(&r, fn, gssencmode, data, len, param);
    int status = client_poll(&r);
    expect_negotiation_failed(r.conn, false, status, expected, fragment);
    expect_nothing_sent(r.fds[1]);
    client_end(&r);
}

/* Peer flags in `param`. */
#define CLOSE_AFTER 1L /* shut down the write side after sending */

/* --- the response to GSSENCRequest -------------------------------------- */

/* Reads GSSENCRequest, then sends the case's bytes in one write. */
static void peer_answer(struct peer *p)
{
    if (!server_read_request(p))
        return;
    if (p->data_len > 0 && !write_all(p->fd, p->data, p->data_len))
        peer_fail(p, "could not send the answer");
    if (p->param & CLOSE_AFTER)
        shutdown(p->fd, SHUT_WR);
}

static void case_g_with_trailing_bytes(void)
{
    static const char answer[] = "G\0\0\0\5HELLO";
    expect_client_failure(peer_answer, "require", answer, sizeof answer - 1, 0, PGGSS_RESULT_PLAINTEXT_INJECTION,
                          "received 9 unencrypted bytes after the server accepted GSSENCRequest");
}

static void case_n_with_trailing_bytes(void)
{
    static const char answer[] = "NE\0\0\0\x08XXXX";
    expect_client_failure(peer_answer, "prefer", answer, sizeof answer - 1, 0, PGGSS_RESULT_PLAINTEXT_INJECTION,
                          "received 9 unexpected bytes after the server declined GSSENCRequest");
}

static void case_n_under_require(void)
{
    expect_client_failure(peer_answer, "require", "N", 1, 0, PGGSS_RESULT_SERVER_DECLINED,
                          "it declined GSSENCRequest ('N'), and gssencmode is \"require\"");
}

/*
 * An 'E' response followed by an ErrorResponse whose fields carry an SGR
 * colour sequence, an OSC 8 hyperlink and a plain URL. The server is not
 * authenticated, so none of it may reach the error message.
 */
static void case_error_response_escapes(void)
{
    struct bytes answer = {0};
    static const char fields[] = "SFATAL\0"
                                 "C28000\0"
                                 "M\x1b[31mpassword expired\x1b[0m: \x1b]8;;http://evil.example/reset\x07"
                                 "click here\x1b]8;;\x07 or visit https://evil.example/login\0"
                                 "\0";
    bytes_append(&answer, "E", 1);
    bytes_append_u32(&answer, (uint32_t)(4 + sizeof fields - 1));
    bytes_append(&answer, fields, sizeof fields - 1);

    struct client_run r;
    client_begin(&r, peer_answer, "require", answer.data, answer.len, CLOSE_AFTER);
    int status = client_poll(&r);
    char *message = strdup(pggss_conn_error_message(r.conn));
    REQUIRE(message != NULL, "out of memory");
    EXPECT_LACKS(message, "\x1b");
    EXPECT_LACKS(message, "\x07");
    EXPECT_LACKS(message, "evil");
    EXPECT_LACKS(message, "http");
    EXPECT_LACKS(message, "password expired");
    EXPECT_LACKS(message, "click");
    EXPECT_LACKS(message, "28000");
    free(message);
    expect_negotiation_failed(r.conn, false, status, PGGSS_RESULT_SERVER_ERROR_RESPONSE,
                              "server answered GSSENCRequest with an error response; its text was not read");
    expect_nothing_sent(r.fds[1]);
    client_end(&r);
    bytes_free(&answer);
}

static void case_unknown_response_byte(void)
{
    expect_client_failure(peer_answer, "require", "\x1b", 1, 0, PGGSS_RESULT_UNEXPECTED_RESPONSE,
                          "received invalid response to GSSENCRequest: byte 0x1b; expected 'G', 'N' or 'E'");
}

static void case_ssl_answer_byte(void)
{
    expect_client_failure(peer_answer, "prefer", "S", 1, 0, PGGSS_RESULT_UNEXPECTED_RESPONSE,
                          "received invalid response to GSSENCRequest: byte 0x53 ('S'); expected 'G', 'N' or 'E'");
}

static void case_eof_after_request(void)
{
    expect_client_failure(peer_answer, "require", NULL, 0, CLOSE_AFTER, PGGSS_RESULT_UNEXPECTED_EOF,
                          "server closed the connection unexpectedly while waiting for the response to GSSENCRequest");
}

/* --- the handshake ------------------------------------------------------ */

/*
 * Reads GSSENCRequest, responds 'G', reads the library's first token, then
 * sends the case's bytes in one write.
 */
static void peer_reply(struct peer *p)
{
    if (!server_read_request(p))
        return;
    if (!write_all(p->fd, "G", 1)) {
        peer_fail(p, "could not send 'G'");
        return;
    }
    struct bytes token = {0};
    if (!read_frame(p->fd, &token, 65532))
        peer_fail(p, "no valid first token from the library");
    bytes_free(&token);
    if (p->data_len > 0 && !write_all(p->fd, p->data, p->data_len))
        peer_fail(p, "could not send the reply");
    if (p->param & CLOSE_AFTER)
        shutdown(p->fd, SHUT_WR);
}

/* Sends only a length word as the reply token. */
static void expect_reply_length_rejected(uint32_t length, pggss_result expected, const char *fragment)
{
    uint8_t word[4] = {(uint8_t)(length >> 24), (uint8_t)(length >> 16), (uint8_t)(length >> 8), (uint8_t)length};
    expect_client_failure(peer_reply, "require", word, sizeof word, 0, expected, fragment);
}

static void case_token_length_0(void)
{
    expect_reply_length_rejected(0, PGGSS_RESULT_EMPTY_PACKET,
                                 "received a GSSAPI handshake packet of length 0; the connection is closed");
}

/*
 * The length word counts the token alone and the limit, 65536, counts the
 * token and the word: 65532 is the largest token length accepted. A length
 * word alone must be rejected at once, before any byte of the token.
 */
static void case_token_length_65533(void)
{
    expect_reply_length_rejected(65533, PGGSS_RESULT_PACKET_TOO_LARGE,
                                 "received a GSSAPI handshake packet of 65537 bytes including the length word, "
                                 "over the maximum of 65536");
}

static void case_token_length_65534(void)
{
    expect_reply_length_rejected(65534, PGGSS_RESULT_PACKET_TOO_LARGE,
                                 "received a GSSAPI handshake packet of 65538 bytes including the length word");
}

static void case_token_length_65535(void)
{
    expect_reply_length_rejected(65535, PGGSS_RESULT_PACKET_TOO_LARGE,
                                 "received a GSSAPI handshake packet of 65539 bytes including the length word");
}

static void case_token_length_65536(void)
{
    expect_reply_length_rejected(65536, PGGSS_RESULT_PACKET_TOO_LARGE,
                                 "received a GSSAPI handshake packet of 65540 bytes including the length word");
}

static void case_token_length_65537(void)
{
    expect_reply_length_rejected(65537, PGGSS_RESULT_PACKET_TOO_LARGE,
                                 "received a GSSAPI handshake packet of 65541 bytes including the length word");
}

static void case_token_length_2147483647(void)
{
    expect_reply_length_rejected(0x7FFFFFFF, PGGSS_RESULT_PACKET_TOO_LARGE,
                                 "received a GSSAPI handshake packet of 2147483651 bytes including the length word");
}

/*
 * A token of 65532 bytes fits the limit exactly: the library reads all of
 * it and hands it to gss_init_sec_context, which rejects the content.
 */
static void case_token_length_65532_accepted(void)
{
    struct bytes reply = {0};
    uint8_t *token = malloc(65532);
    REQUIRE(token != NULL, "out of memory");
    memset(token, 0x41, 65532);
    bytes_append_frame(&reply, token, 65532);
    free(token);
    expect_client_failure(peer_reply, "require", reply.data, reply.len, 0, PGGSS_RESULT_GSS_FAILURE,
                          "GSSAPI gss_init_sec_context failed: Invalid token was supplied");
    bytes_free(&reply);
}

static void case_truncated_token_eof(void)
{
    struct bytes reply = {0};
    bytes_append_u32(&reply, 100);
    bytes_append(&reply, "0123456789012345678901234567890123456789012345678", 49);
    expect_client_failure(peer_reply, "require", reply.data, reply.len, CLOSE_AFTER, PGGSS_RESULT_UNEXPECTED_EOF,
                          "server closed the connection unexpectedly while receiving a GSSAPI handshake token "
                          "(the token is truncated)");
    bytes_free(&reply);
}

/*
 * The reply of a second, unrelated acceptor: a valid AP-REP for a context
 * the library did not start. Mutual authentication must fail.
 */
static void peer_foreign_reply(struct peer *p)
{
    if (!server_read_request(p) || !write_all(p->fd, "G", 1)) {
        peer_fail(p, "negotiation start failed");
        return;
    }
    struct bytes token = {0};
    if (!read_frame(p->fd, &token, 65532))
        peer_fail(p, "no valid first token from the library");
    bytes_free(&token);

    struct context_pair pair;
    char error[512];
    if (!establish_pair(&pair, error, sizeof error)) {
        peer_fail(p, "could not establish the unrelated context pair: %s", error);
        release_pair(&pair);
        return;
    }
    struct bytes reply = {0};
    bytes_append_frame(&reply, pair.reply_token.data, pair.reply_token.len);
    if (!write_all(p->fd, reply.data, reply.len))
        peer_fail(p, "could not send the reply");
    bytes_free(&reply);
    release_pair(&pair);
}

static void case_token_from_unrelated_context(void)
{
    expect_client_failure(peer_foreign_reply, "require", NULL, 0, 0, PGGSS_RESULT_GSS_FAILURE,
                          "GSSAPI gss_init_sec_context failed: Unspecified GSS failure.  Minor code may provide "
                          "more information: Mutual authentication failed");
}

/*
 * A server that never completes: after the first token it sends twenty
 * frames shaped like krb5 GSS tokens (the 0x60 application tag, the krb5
 * mechanism OID, an AP-REP token id) with garbage behind them. The
 * library sends nothing back: its context fails on the first frame, so the
 * round limit (16 steps) is never reached with MIT krb5.
 */
static void case_never_completing_server(void)
{
    static const uint8_t looks_like_token[] = {0x60, 0x1e, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                               0x12, 0x01, 0x02, 0x02, 0x02, 0x00, 0x6f, 0x0f, 0x30,
                                               0x0d, 0xa0, 0x03, 0x02, 0x01, 0x05, 0xa1, 0x03, 0x02,
                                               0x01, 0x0f, 0xa2, 0x01, 0x00};
    struct bytes frames = {0};
    for (int i = 0; i < 20; i++)
        bytes_append_frame(&frames, looks_like_token, sizeof looks_like_token);
    expect_client_failure(peer_reply, "require", frames.data, frames.len, 0, PGGSS_RESULT_GSS_FAILURE,
                          "GSSAPI gss_init_sec_context failed: Unspecified GSS failure.  Minor code may provide "
                          "more information: ASN.1 encoding ended unexpectedly");
    bytes_free(&frames);
}

/* --- one byte at a time ------------------------------------------------- */

static const char bytewise_request[] = "plaintext from the library, sent after a handshake of one-byte writes";
static const char bytewise_reply[] = "plaintext from the fake server, sent one byte per write";

/*
 * Runs the handshake with one byte per send(2), then reads one packet from
 * the library and replies with one packet, again one byte per send(2).
 */
static void peer_bytewise(struct peer *p)
{
    if (!server_handshake(p, true))
        return;
    struct bytes token = {0}, plain = {0}, packet = {0};
    char error[512];
    if (!read_frame(p->fd, &token, 16380)) {
        peer_fail(p, "no packet from the library");
    } else if (!unwrap_token(p->ctx, &token, &plain, error, sizeof error)) {
        peer_fail(p, "could not unwrap the library's packet: %s", error);
    } else if (plain.len != sizeof bytewise_request - 1 || memcmp(plain.data, bytewise_request, plain.len) != 0) {
        peer_fail(p, "the library's packet has the wrong plaintext");
    } else if (!wrap_frame(p->ctx, 1, bytewise_reply, sizeof bytewise_reply - 1, &packet, error, sizeof error)) {
        peer_fail(p, "gss_wrap failed: %s", error);
    } else if (!write_bytewise(p->fd, packet.data, packet.len, 50)) {
        peer_fail(p, "could not send the reply packet");
    }
    bytes_free(&token);
    bytes_free(&plain);
    bytes_free(&packet);
}

static void case_one_byte_writes(void)
{
    struct client_run r;
    client_begin(&r, peer_bytewise, "require", NULL, 0, 0);
    int status = pggss_conn_connect_poll(r.conn);
    EXPECT_INT(status, PGGSS_POLLING_STATUS_OK);
    EXPECT_INT(pggss_conn_outcome(r.conn), PGGSS_OUTCOME_ENCRYPTED);
    EXPECT_INT(pggss_conn_last_result(r.conn), PGGSS_RESULT_OK);
    if (status == PGGSS_POLLING_STATUS_OK) {
        ssize_t n = pggss_conn_write(r.conn, bytewise_request, sizeof bytewise_request - 1);
        EXPECT_INT(n, (ssize_t)(sizeof bytewise_request - 1));
        expect_read_exact(r.conn, bytewise_reply, sizeof bytewise_reply - 1);
    }
    peer_finish(&r.peer);
    client_end(&r);
}

/* A read callback that returns at most one byte per call, from a socket. */
static ssize_t read_one_byte(void *userdata, uint8_t *buf, size_t len, int *err)
{
    int fd = *(int *)userdata;
    ssize_t n = recv(fd, buf, len > 0 ? 1 : 0, 0);
    if (n < 0)
        *err = errno;
    return n;
}

static ssize_t write_socket(void *userdata, const uint8_t *buf, size_t len, int *err)
{
    int fd = *(int *)userdata;
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0)
        *err = errno;
    return n;
}

/* The same exchange through callbacks that deliver one byte per read. */
static void case_one_byte_reads(void)
{
    struct client_run r;
    memset(&r, 0, sizeof r);
    make_socketpair(r.fds);
    r.flags = fcntl(r.fds[0], F_GETFL);
    r.peer.fd = r.fds[1];
    r.peer.run = peer_bytewise;
    peer_start(&r.peer);
    REQUIRE(pggss_conn_new(&r.conn) == PGGSS_RESULT_OK, "pggss_conn_new failed");
    REQUIRE(pggss_conn_set_conninfo(r.conn, "host=localhost gssencmode=require") == PGGSS_RESULT_OK,
            "set_conninfo failed");
    REQUIRE(pggss_conn_set_callbacks(r.conn, read_one_byte, write_socket, &r.fds[0]) == PGGSS_RESULT_OK,
            "set_callbacks failed");
    int status = pggss_conn_connect_poll(r.conn);
    EXPECT_INT(status, PGGSS_POLLING_STATUS_OK);
    EXPECT_INT(pggss_conn_outcome(r.conn), PGGSS_OUTCOME_ENCRYPTED);
    if (status == PGGSS_POLLING_STATUS_OK) {
        ssize_t n = pggss_conn_write(r.conn, bytewise_request, sizeof bytewise_request - 1);
        EXPECT_INT(n, (ssize_t)(sizeof bytewise_request - 1));
        expect_read_exact(r.conn, bytewise_reply, sizeof bytewise_reply - 1);
    }
    peer_finish(&r.peer);
    client_end(&r);
}

/* --- after the handshake ------------------------------------------------ */

enum attack {
    ATTACK_OVERSIZE,          /* length word 16381: 16385 bytes with the word */
    ATTACK_MAX_SIZE,          /* a valid packet of exactly 16384 bytes */
    ATTACK_ZERO_LENGTH,
    ATTACK_INTEGRITY_ONLY,    /* gss_wrap with conf_req_flag 0 */
    ATTACK_REPLAY,            /* packet 1, then packet 1 again */
    ATTACK_SWAP,              /* packet 2, then packet 1 */
    ATTACK_FOREIGN,           /* wrapped by an unrelated context */
    ATTACK_TRUNCATED,         /* half a packet, then end of stream */
    ATTACK_GARBAGE,           /* a plausible length word and random bytes */
    ATTACK_RANDOM,            /* random bytes, length word included */
    ATTACK_VALID_THEN_EMPTY,  /* a valid packet and a zero length in one write */
};

static const char first_plaintext[] = "first packet";
static const char second_plaintext[] = "second packet";

/* Fills `out` with bytes from a fixed-seed xorshift generator. */
static void random_bytes(uint8_t *out, size_t len, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = (uint8_t)x;
    }
}

/* Largest plaintext whose wrapped token is at most 16380 bytes. */
static size_t max_plaintext(gss_ctx_id_t ctx)
{
    OM_uint32 minor, max_input = 0;
    gss_wrap_size_limit(&minor, ctx, 1, GSS_C_QOP_DEFAULT, 16380, &max_input);
    return max_input;
}

static void build_attack(struct peer *p, enum attack attack, struct bytes *out)
{
    char error[512] = "";
    bool ok = true;
    switch (attack) {
    case ATTACK_OVERSIZE:
        bytes_append_u32(out, 16381);
        bytes_append(out, "0123456789abcdef", 16);
        break;
    case ATTACK_MAX_SIZE: {
        size_t len = max_plaintext(p->ctx);
        uint8_t *plain = malloc(len);
        if (plain == NULL) {
            peer_fail(p, "out of memory");
            return;
        }
        random_bytes(plain, len, 7);
        ok = wrap_frame(p->ctx, 1, plain, len, out, error, sizeof error);
        free(plain);
        if (ok && out->len != 16384)
            peer_fail(p, "gss_wrap of %zu bytes gave a packet of %zu bytes, not 16384", len, out->len);
        break;
    }
    case ATTACK_ZERO_LENGTH:
        bytes_append_u32(out, 0);
        break;
    case ATTACK_INTEGRITY_ONLY:
        ok = wrap_frame(p->ctx, 0, first_plaintext, sizeof first_plaintext - 1, out, error, sizeof error);
        break;
    case ATTACK_REPLAY: {
        struct bytes packet = {0};
        ok = wrap_frame(p->ctx, 1, first_plaintext, sizeof first_plaintext - 1, &packet, error, sizeof error);
        bytes_append(out, packet.data, packet.len);
        bytes_append(out, packet.data, packet.len);
        bytes_free(&packet);
        break;
    }
    case ATTACK_SWAP: {
        struct bytes first = {0};
        ok = wrap_frame(p->ctx, 1, first_plaintext, sizeof first_plaintext - 1, &first, error, sizeof error) &&
             wrap_frame(p->ctx, 1, second_plaintext, sizeof second_plaintext - 1, out, error, sizeof error);
        bytes_append(out, first.data, first.len);
        bytes_free(&first);
        break;
    }
    case ATTACK_FOREIGN: {
        struct context_pair pair;
        ok = establish_pair(&pair, error, sizeof error) &&
             wrap_frame(pair.acceptor, 1, first_plaintext, sizeof first_plaintext - 1, out, error, sizeof error);
        release_pair(&pair);
        break;
    }
    case ATTACK_TRUNCATED:
        ok = wrap_frame(p->ctx, 1, first_plaintext, sizeof first_plaintext - 1, out, error, sizeof error);
        out->len /= 2;
        break;
    case ATTACK_GARBAGE: {
        uint8_t garbage[60];
        random_bytes(garbage, sizeof garbage, 12345);
        bytes_append_frame(out, garbage, sizeof garbage);
        break;
    }
    case ATTACK_RANDOM: {
        uint8_t garbage[64];
        random_bytes(garbage, sizeof garbage, 2024);
        bytes_append(out, garbage, sizeof garbage);
        break;
    }
    case ATTACK_VALID_THEN_EMPTY:
        ok = wrap_frame(p->ctx, 1, first_plaintext, sizeof first_plaintext - 1, out, error, sizeof error);
        bytes_append_u32(out, 0);
        break;
    }
    if (!ok)
        peer_fail(p, "could not build the packets: %s", error);
}

/* Completes a real handshake, then sends the attack of `param` in one write. */
static void peer_attack(struct peer *p)
{
    if (!server_handshake(p, false))
        return;
    struct bytes attack = {0};
    build_attack(p, (enum attack)p->param, &attack);
    if (attack.len > 0 && !write_all(p->fd, attack.data, attack.len))
        peer_fail(p, "could not send the attack");
    if (p->param == ATTACK_TRUNCATED)
        shutdown(p->fd, SHUT_WR);
    bytes_free(&attack);
}

/*
 * Runs an attack after the handshake: the library must deliver `valid`
 * plaintexts (each in full) and then reject the next packet with `expected`
 * and `fragment`, copying nothing. Afterwards the stream stays failed.
 */
static void expect_attack(enum attack attack, const char *const *valid, size_t valid_count, pggss_result expected,
                          const char *fragment)
{
    struct client_run r;
    client_begin(&r, peer_attack, "require", NULL, 0, attack);
    int status = client_poll(&r);
    REQUIRE(status == PGGSS_POLLING_STATUS_OK, "handshake with the fake server failed: %s",
            pggss_conn_error_message(r.conn));
    EXPECT_INT(pggss_conn_outcome(r.conn), PGGSS_OUTCOME_ENCRYPTED);
    for (size_t i = 0; i < valid_count; i++)
        expect_read_exact(r.conn, valid[i], strlen(valid[i]));

    expect_read_rejected(r.conn, ECONNRESET, expected, fragment);
    /* GSSAPI failures name the call: gss_unwrap, or gss_unwrap_iov for in-place unwrapping. */
    if (expected == PGGSS_RESULT_GSS_FAILURE)
        EXPECT_CONTAINS(pggss_conn_error_message(r.conn), "GSSAPI gss_unwrap");

    /* The failure is permanent for both directions. */
    expect_read_rejected(r.conn, EINVAL, PGGSS_RESULT_INVALID_STATE,
                         "the encrypted connection failed earlier and cannot be used");
    errno = 0;
    EXPECT_INT(pggss_conn_write(r.conn, "x", 1), -1);
    EXPECT_INT(errno, EINVAL);
    expect_nothing_sent(r.fds[1]);
    client_end(&r);
}

static void case_data_packet_16385(void)
{
    expect_attack(ATTACK_OVERSIZE, NULL, 0, PGGSS_RESULT_PACKET_TOO_LARGE,
                  "received a GSSAPI data packet of 16385 bytes including the length word, over the maximum of "
                  "16384; the connection is closed without reading it");
}

/* The boundary on the accepting side: a real packet of exactly 16384 bytes. */
static void peer_max_size(struct peer *p)
{
    if (!server_handshake(p, false))
        return;
    struct bytes packet = {0};
    build_attack(p, ATTACK_MAX_SIZE, &packet);
    if (packet.len > 0 && !write_all(p->fd, packet.data, packet.len))
        peer_fail(p, "could not send the packet");
    bytes_free(&packet);
    p->param = (long)max_plaintext(p->ctx);
}

static void case_data_packet_16384_accepted(void)
{
    struct client_run r;
    client_begin(&r, peer_max_size, "require", NULL, 0, 0);
    int status = client_poll(&r);
    REQUIRE(status == PGGSS_POLLING_STATUS_OK, "handshake failed: %s", pggss_conn_error_message(r.conn));
    size_t len = (size_t)r.peer.param;
    REQUIRE(len > 0, "the fake server could not size the packet");
    if (getenv("HOSTILE_VERBOSE") != NULL)
        printf("    a packet of 16384 bytes carries %zu plaintext bytes\n", len);
    uint8_t *expected = malloc(len);
    REQUIRE(expected != NULL, "out of memory");
    random_bytes(expected, len, 7);
    expect_read_exact(r.conn, expected, len);
    free(expected);
    EXPECT_INT(pggss_conn_last_result(r.conn), PGGSS_RESULT_OK);
    client_end(&r);
}

static void case_data_zero_length(void)
{
    expect_attack(ATTACK_ZERO_LENGTH, NULL, 0, PGGSS_RESULT_EMPTY_PACKET,
                  "received a GSSAPI data packet of length 0; the connection is closed");
}

static void case_data_integrity_only(void)
{
    expect_attack(ATTACK_INTEGRITY_ONLY, NULL, 0, PGGSS_RESULT_NO_CONFIDENTIALITY,
                  "received a GSSAPI packet without confidentiality (conf_state 0); its contents were discarded");
}

static void case_data_replayed_packet(void)
{
    static const char *const valid[] = {first_plaintext};
    expect_attack(ATTACK_REPLAY, valid, 1, PGGSS_RESULT_GSS_FAILURE,
                  "The token was a duplicate of an earlier token");
}

static void case_data_swapped_packets(void)
{
    expect_attack(ATTACK_SWAP, NULL, 0, PGGSS_RESULT_GSS_FAILURE,
                  "An expected per-message token was not received");
}

static void case_data_foreign_context(void)
{
    expect_attack(ATTACK_FOREIGN, NULL, 0, PGGSS_RESULT_GSS_FAILURE,
                  "A token had an invalid Message Integrity Check (MIC): Decrypt integrity check failed");
}

static void case_data_truncated_eof(void)
{
    expect_attack(ATTACK_TRUNCATED, NULL, 0, PGGSS_RESULT_UNEXPECTED_EOF,
                  "server closed the connection unexpectedly while receiving a GSSAPI-encrypted packet "
                  "(the packet is truncated)");
}

static void case_data_garbage_token(void)
{
    expect_attack(ATTACK_GARBAGE, NULL, 0, PGGSS_RESULT_GSS_FAILURE,
                  "Invalid token was supplied: Token header is malformed or corrupt");
}

static void case_data_random_bytes(void)
{
    uint8_t garbage[4];
    random_bytes(garbage, sizeof garbage, 2024);
    unsigned long length = ((unsigned long)garbage[0] << 24) | ((unsigned long)garbage[1] << 16) |
                           ((unsigned long)garbage[2] << 8) | garbage[3];
    REQUIRE(length > 16380, "the random length word %lu is not over the limit; change the seed", length);
    char fragment[160];
    snprintf(fragment, sizeof fragment, "received a GSSAPI data packet of %lu bytes including the length word",
             length + 4);
    expect_attack(ATTACK_RANDOM, NULL, 0, PGGSS_RESULT_PACKET_TOO_LARGE, fragment);
}

static void case_data_valid_then_empty(void)
{
    static const char *const valid[] = {first_plaintext};
    expect_attack(ATTACK_VALID_THEN_EMPTY, valid, 1, PGGSS_RESULT_EMPTY_PACKET,
                  "received a GSSAPI data packet of length 0");
}

/*
 * Plaintext behind the last handshake token, in the same segment: an
 * ErrorResponse. The handshake completes and the bytes are read as a
 * packet, whose length word 'E',0,0,0 is far over the limit.
 */
static void peer_plaintext_after_reply(struct peer *p)
{
    static const char error_response[] = "E\0\0\0\x20SFATAL\0M\x1b[31minjected\x1b[0m\0\0";
    server_handshake_with_trailer(p, false, error_response, sizeof error_response - 1);
}

static void case_plaintext_after_last_token(void)
{
    struct client_run r;
    client_begin(&r, peer_plaintext_after_reply, "require", NULL, 0, 0);
    int status = client_poll(&r);
    EXPECT_INT(status, PGGSS_POLLING_STATUS_OK);
    EXPECT_INT(pggss_conn_outcome(r.conn), PGGSS_OUTCOME_ENCRYPTED);
    /* A buffered packet with an invalid length counts as 1 pending byte: the next read reports it. */
    EXPECT_INT(pggss_conn_pending(r.conn), 1);
    expect_read_rejected(r.conn, ECONNRESET, PGGSS_RESULT_PACKET_TOO_LARGE,
                         "received a GSSAPI data packet of 1157627908 bytes including the length word");
    EXPECT_LACKS(pggss_conn_error_message(r.conn), "injected");
    client_end(&r);
}

/*
 * The sans-IO buffer transport: the caller feeds 'G' and a plaintext
 * ErrorResponse in one pggss_conn_feed call, as when both arrived in one
 * segment. The library must reject them as it does on a socket.
 */
static void case_buffers_g_with_trailing_bytes(void)
{
    pggss_conn *conn = NULL;
    REQUIRE(pggss_conn_new(&conn) == PGGSS_RESULT_OK, "pggss_conn_new failed");
    REQUIRE(pggss_conn_set_conninfo(conn, "host=localhost gssencmode=require") == PGGSS_RESULT_OK,
            "set_conninfo failed");
    REQUIRE(pggss_conn_use_buffers(conn) == PGGSS_RESULT_OK, "use_buffers failed");

    EXPECT_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_READING);
    uint8_t request[16];
    EXPECT_INT(pggss_conn_take_output(conn, request, sizeof request), 8);
    EXPECT(memcmp(request, gssenc_request, 8) == 0, "the library's output is not a GSSENCRequest");
    EXPECT_INT(pggss_conn_wanted(conn), 1);

    static const char fed[] = "GE\0\0\0\x10SFATAL\0M\x1b[31m\0\0";
    EXPECT_INT(pggss_conn_feed(conn, (const uint8_t *)fed, sizeof fed - 1), PGGSS_RESULT_OK);
    int status = pggss_conn_connect_poll(conn);
    EXPECT_INT(pggss_conn_output_pending(conn), 0);
    expect_negotiation_failed(conn, false, status, PGGSS_RESULT_PLAINTEXT_INJECTION,
                              "received 20 unencrypted bytes after the server accepted GSSENCRequest");
    pggss_conn_free(conn);
}

const struct test_case client_cases[] = {
    {"client_g_with_trailing_bytes", case_g_with_trailing_bytes},
    {"client_n_with_trailing_bytes", case_n_with_trailing_bytes},
    {"client_n_under_require", case_n_under_require},
    {"client_error_response_escapes", case_error_response_escapes},
    {"client_unknown_response_byte", case_unknown_response_byte},
    {"client_ssl_answer_byte", case_ssl_answer_byte},
    {"client_eof_after_request", case_eof_after_request},
    {"client_buffers_g_with_trailing_bytes", case_buffers_g_with_trailing_bytes},
    {"client_token_length_0", case_token_length_0},
    {"client_token_length_65532_accepted", case_token_length_65532_accepted},
    {"client_token_length_65533", case_token_length_65533},
    {"client_token_length_65534", case_token_length_65534},
    {"client_token_length_65535", case_token_length_65535},
    {"client_token_length_65536", case_token_length_65536},
    {"client_token_length_65537", case_token_length_65537},
    {"client_token_length_2147483647", case_token_length_2147483647},
    {"client_truncated_token_eof", case_truncated_token_eof},
    {"client_token_from_unrelated_context", case_token_from_unrelated_context},
    {"client_never_completing_server", case_never_completing_server},
    {"client_one_byte_writes", case_one_byte_writes},
    {"client_one_byte_reads", case_one_byte_reads},
    {"client_plaintext_after_last_token", case_plaintext_after_last_token},
    {"client_data_packet_16384_accepted", case_data_packet_16384_accepted},
    {"client_data_packet_16385", case_data_packet_16385},
    {"client_data_zero_length", case_data_zero_length},
    {"client_data_integrity_only", case_data_integrity_only},
    {"client_data_replayed_packet", case_data_replayed_packet},
    {"client_data_swapped_packets", case_data_swapped_packets},
    {"client_data_foreign_context", case_data_foreign_context},
    {"client_data_truncated_eof", case_data_truncated_eof},
    {"client_data_garbage_token", case_data_garbage_token},
    {"client_data_random_bytes", case_data_random_bytes},
    {"client_data_valid_then_empty", case_data_valid_then_empty},
};
const size_t client_case_count = sizeof client_cases / sizeof client_cases[0];
