/*
 * Hostile clients against the library in the acceptor role. The library
 * accepts with the server keytab (pggss_acceptor_new and
 * pggss_acceptor_set_keytab) on a socketpair. A fake client thread, with an
 * initiator context from the fixture's ticket cache where it needs one,
 * talks on the other end.
 *
 * Fragments of GSSAPI status text are those of MIT krb5 1.20 (Debian 12);
 * another krb5 release may word them differently.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

struct acceptor_run {
    int fds[2];
    int flags;
    pggss_conn *conn;
    struct peer peer;
};

static void acceptor_begin(struct acceptor_run *r, peer_fn fn, const void *data, size_t len, long param)
{
    memset(r, 0, sizeof *r);
    make_socketpair(r->fds);
    r->flags = fcntl(r->fds[0], F_GETFL);
    r->peer.fd = r->fds[1];
    r->peer.run = fn;
    r->peer.data = data;
    r->peer.data_len = len;
    r->peer.param = param;
    r->conn = library_acceptor(r->fds[0]);
    peer_start(&r->peer);
}

static void acceptor_end(struct acceptor_run *r)
{
    expect_fd_untouched(r->fds[0], r->flags);
    pggss_conn_free(r->conn);
    close(r->fds[0]);
    close(r->fds[1]);
}

static void expect_acceptor_failure(peer_fn fn, const void *data, size_t len, long param, pggss_result expected,
                                    const char *fragment)
{
    struct acceptor_run r;
    acceptor_begin(&r, fn, data, len, param);
    int status = pggss_conn_accept_poll(r.conn);
    peer_finish(&r.peer);
    expect_negotiation_failed(r.conn, true, status, expected, fragment);
    EXPECT_INT(pggss_conn_startup_packet(r.conn, NULL, NULL, NULL, NULL), PGGSS_RESULT_INVALID_STATE);
    expect_nothing_sent(r.fds[1]);
    acceptor_end(&r);
}

#define CLOSE_AFTER 1L /* shut down the write side after sending */

/* --- the first packet --------------------------------------------------- */

/* Sends the case's bytes in one write and reads nothing. */
static void peer_send_raw(struct peer *p)
{
    if (p->data_len > 0 && !write_all(p->fd, p->data, p->data_len))
        peer_fail(p, "could not send");
    if (p->param & CLOSE_AFTER)
        shutdown(p->fd, SHUT_WR);
}

/* A StartupMessage pipelined behind GSSENCRequest, in one segment. */
static void case_startup_pipelined(void)
{
    struct bytes sent = {0};
    bytes_append(&sent, gssenc_request, sizeof gssenc_request);
    startup_message(&sent);
    char fragment[160];
    snprintf(fragment, sizeof fragment,
             "received %zu bytes after GSSENCRequest, before the server answered (a pipelined StartupMessage or "
             "injected plaintext)",
             sent.len - sizeof gssenc_request);
    expect_acceptor_failure(peer_send_raw, sent.data, sent.len, 0, PGGSS_RESULT_PLAINTEXT_INJECTION, fragment);
    bytes_free(&sent);
}

static void case_startup_length_7(void)
{
    static const uint8_t packet[] = {0, 0, 0, 7, 0, 3, 0};
    expect_acceptor_failure(peer_send_raw, packet, sizeof packet, 0, PGGSS_RESULT_INVALID_STARTUP_PACKET,
                            "invalid startup packet length 7; expected 8 to 10000 bytes");
}

/* Only the length word is sent: the acceptor must decide on it alone. */
static void case_startup_length_10001(void)
{
    static const uint8_t packet[] = {0, 0, 0x27, 0x11};
    expect_acceptor_failure(peer_send_raw, packet, sizeof packet, 0, PGGSS_RESULT_INVALID_STARTUP_PACKET,
                            "invalid startup packet length 10001; expected 8 to 10000 bytes");
}

static void case_startup_unknown_code(void)
{
    /* 1234.9999 looks like a request code, but no request has it. */
    static const uint8_t packet[] = {0, 0, 0, 8, 0x04, 0xd2, 0x27, 0x0f};
    expect_acceptor_failure(peer_send_raw, packet, sizeof packet, 0, PGGSS_RESULT_INVALID_STARTUP_PACKET,
                            "unsupported startup packet code 80881423 (protocol 1234.9999); expected protocol 3.x, "
                            "GSSENCRequest, SSLRequest or CancelRequest");
}

static void case_gssenc_request_length_9(void)
{
    static const uint8_t packet[] = {0, 0, 0, 9, 0x04, 0xd2, 0x16, 0x30, 0};
    expect_acceptor_failure(peer_send_raw, packet, sizeof packet, 0, PGGSS_RESULT_INVALID_STARTUP_PACKET,
                            "invalid GSSENCRequest length 9; expected 8");
}

static void case_eof_before_startup(void)
{
    expect_acceptor_failure(peer_send_raw, "\0\0", 2, CLOSE_AFTER, PGGSS_RESULT_UNEXPECTED_EOF,
                            "client closed the connection before sending a complete startup packet (2 bytes "
                            "received)");
}

/* --- the handshake ------------------------------------------------------ */

/* Sends GSSENCRequest, reads 'G', then sends the case's bytes in one write. */
static void peer_after_g(struct peer *p)
{
    uint8_t answer = 0;
    if (!write_all(p->fd, gssenc_request, sizeof gssenc_request) || !read_exact(p->fd, &answer, 1) || answer != 'G') {
        peer_fail(p, "the library did not answer GSSENCRequest with 'G' (got 0x%02x)", answer);
        return;
    }
    if (p->data_len > 0 && !write_all(p->fd, p->data, p->data_len))
        peer_fail(p, "could not send");
    if (p->param & CLOSE_AFTER)
        shutdown(p->fd, SHUT_WR);
}

static void expect_token_length_rejected(uint32_t length, pggss_result expected, const char *fragment)
{
    uint8_t word[4] = {(uint8_t)(length >> 24), (uint8_t)(length >> 16), (uint8_t)(length >> 8), (uint8_t)length};
    expect_acceptor_failure(peer_after_g, word, sizeof word, 0, expected, fragment);
}

static void case_token_length_0(void)
{
    expect_token_length_rejected(0, PGGSS_RESULT_EMPTY_PACKET, "received a GSSAPI handshake packet of length 0");
}

static void case_token_length_65533(void)
{
    expect_token_length_rejected(65533, PGGSS_RESULT_PACKET_TOO_LARGE,
                                 "received a GSSAPI handshake packet of 65537 bytes including the length word, "
                                 "over the maximum of 65536");
}

static void case_token_length_2147483647(void)
{
    expect_token_length_rejected(0x7FFFFFFF, PGGSS_RESULT_PACKET_TOO_LARGE,
                                 "received a GSSAPI handshake packet of 2147483651 bytes including the length word");
}

static void case_token_length_65532_accepted(void)
{
    struct bytes frame = {0};
    uint8_t *token = malloc(65532);
    REQUIRE(token != NULL, "out of memory");
    memset(token, 0x60, 65532);
    bytes_append_frame(&frame, token, 65532);
    free(token);
    expect_acceptor_failure(peer_after_g, frame.data, frame.len, 0, PGGSS_RESULT_GSS_FAILURE,
                            "GSSAPI gss_accept_sec_context failed: Invalid token was supplied");
    bytes_free(&frame);
}

static void case_truncated_token_eof(void)
{
    static const uint8_t frame[] = {0, 0, 0, 100, 0x60, 0x81, 0x90, 0x06, 0x09};
    expect_acceptor_failure(peer_after_g, frame, sizeof frame, CLOSE_AFTER, PGGSS_RESULT_UNEXPECTED_EOF,
                            "client closed the connection unexpectedly while receiving a GSSAPI handshake token (the "
                            "token is truncated)");
}

/*
 * Sends GSSENCRequest, reads 'G', and sends a real first token for the
 * service in `data`, followed in the same write by the bytes in `param`
 * (a struct bytes pointer), without waiting for a reply.
 */
static void peer_token_then(struct peer *p)
{
    uint8_t answer = 0;
    if (!write_all(p->fd, gssenc_request, sizeof gssenc_request) || !read_exact(p->fd, &answer, 1) || answer != 'G') {
        peer_fail(p, "the library did not answer GSSENCRequest with 'G'");
        return;
    }
    OM_uint32 major, minor;
    gss_name_t target = service_name(p->data);
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &p->ctx, target, GSS_C_NO_OID, CLIENT_FLAGS, 0,
                                 GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
    gss_release_name(&minor, &target);
    if (major != GSS_S_CONTINUE_NEEDED) {
        char text[512];
        gss_status_text(major, minor, text, sizeof text);
        peer_fail(p, "gss_init_sec_context failed: %s", text);
        return;
    }
    struct bytes sent = {0};
    bytes_append_frame(&sent, out.value, out.length);
    gss_release_buffer(&minor, &out);
    const struct bytes *trailer = (const struct bytes *)p->param;
    if (trailer != NULL)
        bytes_append(&sent, trailer->data, trailer->len);
    if (!write_all(p->fd, sent.data, sent.len))
        peer_fail(p, "could not send");
    bytes_free(&sent);
}

/* A StartupMessage sent right behind the first token, before the reply. */
static void case_bytes_after_first_token(void)
{
    struct bytes trailer = {0};
    startup_message(&trailer);
    char fragment[160];
    snprintf(fragment, sizeof fragment,
             "received %zu bytes from the client before the GSSAPI handshake allowed it to send any", trailer.len);
    expect_acceptor_failure(peer_token_then, "postgres", 0, (long)&trailer, PGGSS_RESULT_PLAINTEXT_INJECTION,
                            fragment);
    bytes_free(&trailer);
}

/* A valid ticket for other/localhost, whose key the server keytab lacks. */
static void case_ticket_for_other_service(void)
{
    expect_acceptor_failure(peer_token_then, "other", 0, 0, PGGSS_RESULT_GSS_FAILURE,
                            "GSSAPI gss_accept_sec_context failed: Unspecified GSS failure.  Minor code may provide "
                            "more information: Request ticket server other/localhost@PGGSS.TEST not found in "
                            "keytab");
}

/*
 * A real first token for the service in `data` whose ticket's server name is
 * rewritten: the name travels in clear, so an unauthenticated client chooses
 * it. The 9 bytes of "localhost" become the 9 bytes "ESC[31mEVIL", an SGR
 * escape sequence, which keeps the DER encoding valid. With `param` 1 the
 * peer then completes the handshake and sends a wrapped StartupMessage.
 */
static void peer_rewritten_service_name(struct peer *p)
{
    uint8_t answer = 0;
    if (!write_all(p->fd, gssenc_request, sizeof gssenc_request) || !read_exact(p->fd, &answer, 1) || answer != 'G') {
        peer_fail(p, "the library did not answer GSSENCRequest with 'G'");
        return;
    }
    OM_uint32 major, minor;
    gss_name_t target = service_name(p->data);
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &p->ctx, target, GSS_C_NO_OID, CLIENT_FLAGS, 0,
                                 GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
    if (major != GSS_S_CONTINUE_NEEDED) {
        peer_fail(p, "gss_init_sec_context failed");
        gss_release_name(&minor, &target);
        return;
    }
    uint8_t *name = memmem(out.value, out.length, "localhost", 9);
    struct bytes frame = {0};
    if (name == NULL) {
        peer_fail(p, "the first token does not contain the service host name in clear");
    } else {
        memcpy(name, "\x1b[31mEVIL", 9);
        bytes_append_frame(&frame, out.value, out.length);
        if (!write_all(p->fd, frame.data, frame.len))
            peer_fail(p, "could not send");
    }
    gss_release_buffer(&minor, &out);
    bytes_free(&frame);

    struct bytes reply = {0}, startup = {0}, packet = {0};
    char error[512];
    if (p->error[0] == '\0' && p->param == 1) {
        if (!read_frame(p->fd, &reply, 65532)) {
            peer_fail(p, "no handshake reply from the library");
        } else {
            gss_buffer_desc in = {reply.len, reply.data};
            major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &p->ctx, target, GSS_C_NO_OID, CLIENT_FLAGS,
                                         0, GSS_C_NO_CHANNEL_BINDINGS, &in, NULL, &out, NULL, NULL);
            gss_release_buffer(&minor, &out);
            startup_message(&startup);
            if (major != GSS_S_COMPLETE)
                peer_fail(p, "the library's reply did not complete the context");
            else if (!wrap_frame(p->ctx, 1, startup.data, startup.len, &packet, error, sizeof error) ||
                     !write_all(p->fd, packet.data, packet.len))
                peer_fail(p, "could not send the StartupMessage");
        }
    }
    gss_release_name(&minor, &target);
    bytes_free(&reply);
    bytes_free(&startup);
    bytes_free(&packet);
}

/*
 * A ticket for other/localhost, whose key the server keytab lacks, with the
 * rewritten name: MIT krb5 puts the name into its status text, and the
 * library's error message must not carry the escape sequence to a log or
 * terminal.
 */
static void case_escape_in_ticket_service_name(void)
{
    struct acceptor_run r;
    acceptor_begin(&r, peer_rewritten_service_name, "other", 0, 0);
    int status = pggss_conn_accept_poll(r.conn);
    peer_finish(&r.peer);
    EXPECT_LACKS(pggss_conn_error_message(r.conn), "\x1b");
    expect_negotiation_failed(r.conn, true, status, PGGSS_RESULT_GSS_FAILURE, "not found in keytab");
    expect_nothing_sent(r.fds[1]);
    acceptor_end(&r);
}

/*
 * A ticket for postgres/localhost with the rewritten name. The ticket's
 * server name is not protected, and an acceptor without a service
 * restriction tries every key in its keytab. This is MIT krb5 behaviour,
 * and PostgreSQL, which accepts with GSS_C_NO_CREDENTIAL, behaves the same.
 * The ticket decrypts with the key of postgres/localhost, so the client
 * authenticates as tester@PGGSS.TEST and the connection is encrypted.
 */
static void case_rewritten_service_name_accepted(void)
{
    struct acceptor_run r;
    acceptor_begin(&r, peer_rewritten_service_name, "postgres", 0, 1);
    int status = pggss_conn_accept_poll(r.conn);
    EXPECT_INT(status, PGGSS_POLLING_STATUS_OK);
    EXPECT_INT(pggss_conn_outcome(r.conn), PGGSS_OUTCOME_ENCRYPTED);
    if (status == PGGSS_POLLING_STATUS_OK) {
        char principal[64] = "";
        size_t len = 0;
        EXPECT_INT(pggss_conn_client_principal(r.conn, principal, sizeof principal, &len), PGGSS_RESULT_OK);
        EXPECT(strcmp(principal, "tester@PGGSS.TEST") == 0, "client principal is \"%s\"", principal);
        struct bytes startup = {0};
        startup_message(&startup);
        expect_read_exact(r.conn, startup.data, startup.len);
        bytes_free(&startup);
    }
    peer_finish(&r.peer);
    acceptor_end(&r);
}

/*
 * The same ticket against an acceptor restricted to postgres@localhost with
 * pggss_acceptor_set_service. The restriction selects the keys that may
 * decrypt a ticket; MIT krb5 1.20 does not compare the ticket's unprotected
 * server name with it, so this ticket, encrypted with the key of
 * postgres/localhost, is accepted too.
 */
static void case_rewritten_service_name_restricted(void)
{
    struct acceptor_run r;
    acceptor_begin(&r, peer_rewritten_service_name, "postgres", 0, 1);
    EXPECT_INT(pggss_acceptor_set_service(r.conn, "postgres@localhost"), PGGSS_RESULT_OK);
    int status = pggss_conn_accept_poll(r.conn);
    EXPECT_INT(status, PGGSS_POLLING_STATUS_OK);
    EXPECT_INT(pggss_conn_outcome(r.conn), PGGSS_OUTCOME_ENCRYPTED);
    if (status == PGGSS_POLLING_STATUS_OK) {
        struct bytes startup = {0};
        startup_message(&startup);
        expect_read_exact(r.conn, startup.data, startup.len);
        bytes_free(&startup);
    }
    peer_finish(&r.peer);
    acceptor_end(&r);
}

/* After a declined GSSENCRequest, a second GSSENCRequest. */
static void peer_request_twice(struct peer *p)
{
    uint8_t answer = 0;
    if (!write_all(p->fd, gssenc_request, sizeof gssenc_request) || !read_exact(p->fd, &answer, 1) || answer != 'N') {
        peer_fail(p, "the library did not answer GSSENCRequest with 'N' (got 0x%02x)", answer);
        return;
    }
    if (!write_all(p->fd, gssenc_request, sizeof gssenc_request))
        peer_fail(p, "could not send the second GSSENCRequest");
}

static void case_gssenc_request_after_decline(void)
{
    struct acceptor_run r;
    acceptor_begin(&r, peer_request_twice, NULL, 0, 0);
    EXPECT_INT(pggss_acceptor_set_decline(r.conn, true), PGGSS_RESULT_OK);
    int status = pggss_conn_accept_poll(r.conn);
    peer_finish(&r.peer);
    expect_negotiation_failed(r.conn, true, status, PGGSS_RESULT_INVALID_STARTUP_PACKET,
                              "client sent GSSENCRequest again after it was declined");
    expect_nothing_sent(r.fds[1]);
    acceptor_end(&r);
}

/*
 * A client that stops in the middle of its first token. pggssenc has no
 * timer: on a non-blocking socket accept_poll keeps returning READING,
 * reports how many bytes it still needs, and the caller drops the
 * connection when its own deadline passes.
 */
static void case_stalled_handshake(void)
{
    int fds[2];
    make_socketpair(fds);
    set_nonblocking(fds[0], true);
    int flags = fcntl(fds[0], F_GETFL);
    pggss_conn *conn = library_acceptor(fds[0]);

    EXPECT_INT(pggss_conn_accept_poll(conn), PGGSS_POLLING_STATUS_READING);
    REQUIRE(write_all(fds[1], gssenc_request, sizeof gssenc_request), "could not send GSSENCRequest");
    EXPECT_INT(pggss_conn_accept_poll(conn), PGGSS_POLLING_STATUS_READING);
    uint8_t answer = 0;
    REQUIRE(read_exact(fds[1], &answer, 1), "no response to GSSENCRequest from the library");
    REQUIRE(answer == 'G', "the library responded 0x%02x to GSSENCRequest, expected 'G'", answer);

    OM_uint32 major, minor;
    gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
    gss_name_t target = service_name("postgres");
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &ctx, target, GSS_C_NO_OID, CLIENT_FLAGS, 0,
                                 GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
    gss_release_name(&minor, &target);
    REQUIRE(major == GSS_S_CONTINUE_NEEDED, "gss_init_sec_context failed");
    struct bytes frame = {0};
    bytes_append_frame(&frame, out.value, out.length);
    gss_release_buffer(&minor, &out);
    size_t half = frame.len / 2;
    REQUIRE(write_all(fds[1], frame.data, half), "could not send half the token");

    for (int i = 0; i < 5; i++) {
        struct pollfd pfd = {fds[0], POLLIN, 0};
        poll(&pfd, 1, 20);
        EXPECT_INT(pggss_conn_accept_poll(conn), PGGSS_POLLING_STATUS_READING);
    }
    EXPECT_INT(pggss_conn_wanted(conn), frame.len - half);
    EXPECT_INT(pggss_conn_outcome(conn), PGGSS_OUTCOME_PENDING);
    EXPECT_INT(pggss_conn_last_result(conn), PGGSS_RESULT_WOULD_BLOCK);
    EXPECT(strcmp(pggss_conn_error_message(conn), "") == 0, "error message is \"%s\", expected \"\"",
           pggss_conn_error_message(conn));
    expect_read_rejected(conn, EINVAL, PGGSS_RESULT_INVALID_STATE, "negotiation has not finished");
    EXPECT(pending_bytes(fds[1]) == 0, "the library sent bytes while the token was incomplete");

    /* The caller's deadline passed: drop the connection. */
    pggss_conn_free(conn);
    expect_fd_untouched(fds[0], flags);
    delete_context(&ctx);
    bytes_free(&frame);
    close(fds[0]);
    close(fds[1]);
}

/* --- after the handshake ------------------------------------------------ */

enum client_attack {
    CLIENT_INTEGRITY_ONLY,
    CLIENT_OVERSIZE,
    CLIENT_PLAINTEXT_STARTUP, /* a StartupMessage in plaintext, then end of stream */
    CLIENT_VALID_BYTEWISE,    /* a wrapped StartupMessage, one byte per write */
};

/* Completes the handshake, then sends the attack of `param`. */
static void peer_client_attack(struct peer *p)
{
    bool bytewise = p->param == CLIENT_VALID_BYTEWISE;
    if (!client_handshake(p, "postgres", bytewise))
        return;
    struct bytes startup = {0}, sent = {0};
    startup_message(&startup);
    char error[512] = "";
    bool ok = true;
    switch ((enum client_attack)p->param) {
    case CLIENT_INTEGRITY_ONLY:
        ok = wrap_frame(p->ctx, 0, startup.data, startup.len, &sent, error, sizeof error);
        break;
    case CLIENT_OVERSIZE:
        bytes_append_u32(&sent, 16381);
        break;
    case CLIENT_PLAINTEXT_STARTUP:
        bytes_append(&sent, startup.data, startup.len);
        break;
    case CLIENT_VALID_BYTEWISE:
        ok = wrap_frame(p->ctx, 1, startup.data, startup.len, &sent, error, sizeof error);
        break;
    }
    if (!ok)
        peer_fail(p, "could not wrap: %s", error);
    else if (!(bytewise ? write_bytewise(p->fd, sent.data, sent.len, 50) : write_all(p->fd, sent.data, sent.len)))
        peer_fail(p, "could not send");
    if (p->param == CLIENT_PLAINTEXT_STARTUP)
        shutdown(p->fd, SHUT_WR);

    if (ok && p->param == CLIENT_VALID_BYTEWISE) {
        /* The library replies with one packet, which must decrypt to AuthenticationOk. */
        struct bytes token = {0}, plain = {0};
        if (!read_frame(p->fd, &token, 16380))
            peer_fail(p, "no packet from the library");
        else if (!unwrap_token(p->ctx, &token, &plain, error, sizeof error))
            peer_fail(p, "could not unwrap the library's packet: %s", error);
        else if (plain.len != 9 || memcmp(plain.data, "R\0\0\0\x08\0\0\0\0", 9) != 0)
            peer_fail(p, "the library's packet is not AuthenticationOk");
        bytes_free(&token);
        bytes_free(&plain);
    }
    bytes_free(&startup);
    bytes_free(&sent);
}

static void expect_client_attack(enum client_attack attack, int expected_errno, pggss_result expected,
                                 const char *fragment)
{
    struct acceptor_run r;
    acceptor_begin(&r, peer_client_attack, NULL, 0, attack);
    int status = pggss_conn_accept_poll(r.conn);
    peer_finish(&r.peer);
    REQUIRE(status == PGGSS_POLLING_STATUS_OK, "handshake with the fake client failed: %s",
            pggss_conn_error_message(r.conn));
    EXPECT_INT(pggss_conn_outcome(r.conn), PGGSS_OUTCOME_ENCRYPTED);
    expect_read_rejected(r.conn, expected_errno, expected, fragment);
    expect_nothing_sent(r.fds[1]);
    acceptor_end(&r);
}

static void case_integrity_only_packet(void)
{
    expect_client_attack(CLIENT_INTEGRITY_ONLY, ECONNRESET, PGGSS_RESULT_NO_CONFIDENTIALITY,
                         "received a GSSAPI packet without confidentiality (conf_state 0)");
}

static void case_data_packet_16385(void)
{
    expect_client_attack(CLIENT_OVERSIZE, ECONNRESET, PGGSS_RESULT_PACKET_TOO_LARGE,
                         "received a GSSAPI data packet of 16385 bytes including the length word");
}

/*
 * A StartupMessage in plaintext after the handshake. Its length word is
 * read as a token length, and the token is 4 bytes short of it, so the
 * stream ends inside the packet and nothing is delivered.
 */
static void case_plaintext_startup_after_handshake(void)
{
    expect_client_attack(CLIENT_PLAINTEXT_STARTUP, ECONNRESET, PGGSS_RESULT_UNEXPECTED_EOF,
                         "(the packet is truncated)");
}

/*
 * The same plaintext StartupMessage, checking the wording: in the acceptor
 * role the peer that closed the stream is the client.
 */
static void case_eof_message_names_client(void)
{
    expect_client_attack(CLIENT_PLAINTEXT_STARTUP, ECONNRESET, PGGSS_RESULT_UNEXPECTED_EOF,
                         "client closed the connection unexpectedly while receiving a GSSAPI-encrypted packet (the "
                         "packet is truncated)");
}

/*
 * A client that does not request mutual authentication. Its krb5 context is
 * complete after its first token and the acceptor sends no reply, so the
 * client may send its first encrypted packet at once. PostgreSQL's server
 * reads one packet at a time and accepts this. With `param` 0 the token and
 * the packet go in one write, with 1 the packet follows 200 ms later.
 */
static void peer_non_mutual(struct peer *p)
{
    uint8_t answer = 0;
    if (!write_all(p->fd, gssenc_request, sizeof gssenc_request) || !read_exact(p->fd, &answer, 1) || answer != 'G') {
        peer_fail(p, "the library did not answer GSSENCRequest with 'G'");
        return;
    }
    OM_uint32 major, minor, flags = CLIENT_FLAGS & ~(OM_uint32)GSS_C_MUTUAL_FLAG;
    gss_name_t target = service_name("postgres");
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &p->ctx, target, GSS_C_NO_OID, flags, 0,
                                 GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
    gss_release_name(&minor, &target);
    if (major != GSS_S_COMPLETE) {
        char text[512];
        gss_status_text(major, minor, text, sizeof text);
        peer_fail(p, "gss_init_sec_context without mutual authentication did not complete: %s", text);
        gss_release_buffer(&minor, &out);
        return;
    }
    struct bytes token = {0}, packet = {0}, startup = {0};
    bytes_append_frame(&token, out.value, out.length);
    gss_release_buffer(&minor, &out);
    startup_message(&startup);
    char error[512];
    if (!wrap_frame(p->ctx, 1, startup.data, startup.len, &packet, error, sizeof error)) {
        peer_fail(p, "gss_wrap failed: %s", error);
    } else if (p->param == 0) {
        bytes_append(&token, packet.data, packet.len);
        if (!write_all(p->fd, token.data, token.len))
            peer_fail(p, "could not send");
    } else {
        if (!write_all(p->fd, token.data, token.len))
            peer_fail(p, "could not send the token");
        usleep(200 * 1000);
        if (!write_all(p->fd, packet.data, packet.len))
            peer_fail(p, "could not send the packet");
    }
    bytes_free(&token);
    bytes_free(&packet);
    bytes_free(&startup);
}

static void expect_non_mutual_accepted(long param)
{
    struct acceptor_run r;
    acceptor_begin(&r, peer_non_mutual, NULL, 0, param);
    int status = pggss_conn_accept_poll(r.conn);
    peer_finish(&r.peer);
    EXPECT(status == PGGSS_POLLING_STATUS_OK, "accept_poll returned %d, result %d: %s", status,
           (int)pggss_conn_last_result(r.conn), pggss_conn_error_message(r.conn));
    if (status == PGGSS_POLLING_STATUS_OK) {
        EXPECT_INT(pggss_conn_outcome(r.conn), PGGSS_OUTCOME_ENCRYPTED);
        struct bytes startup = {0};
        startup_message(&startup);
        expect_read_exact(r.conn, startup.data, startup.len);
        bytes_free(&startup);
    }
    expect_nothing_sent(r.fds[1]);
    acceptor_end(&r);
}

static void case_non_mutual_client_paused(void)
{
    expect_non_mutual_accepted(1);
}

static void case_non_mutual_client_pipelined(void)
{
    expect_non_mutual_accepted(0);
}

static void case_one_byte_writes(void)
{
    struct acceptor_run r;
    acceptor_begin(&r, peer_client_attack, NULL, 0, CLIENT_VALID_BYTEWISE);
    int status = pggss_conn_accept_poll(r.conn);
    EXPECT_INT(status, PGGSS_POLLING_STATUS_OK);
    EXPECT_INT(pggss_conn_outcome(r.conn), PGGSS_OUTCOME_ENCRYPTED);
    if (status == PGGSS_POLLING_STATUS_OK) {
        char user[64] = "", principal[64] = "";
        size_t len = 0;
        EXPECT_INT(pggss_conn_client_user(r.conn, user, sizeof user, &len), PGGSS_RESULT_OK);
        EXPECT(strcmp(user, "tester") == 0, "client user is \"%s\", expected \"tester\"", user);
        EXPECT_INT(pggss_conn_client_principal(r.conn, principal, sizeof principal, &len), PGGSS_RESULT_OK);
        EXPECT(strcmp(principal, "tester@PGGSS.TEST") == 0, "client principal is \"%s\"", principal);

        struct bytes startup = {0};
        startup_message(&startup);
        expect_read_exact(r.conn, startup.data, startup.len);
        bytes_free(&startup);
        EXPECT_INT(pggss_conn_write(r.conn, "R\0\0\0\x08\0\0\0\0", 9), 9);
    }
    peer_finish(&r.peer);
    acceptor_end(&r);
}

const struct test_case acceptor_cases[] = {
    {"acceptor_startup_pipelined", case_startup_pipelined},
    {"acceptor_startup_length_7", case_startup_length_7},
    {"acceptor_startup_length_10001", case_startup_length_10001},
    {"acceptor_startup_unknown_code", case_startup_unknown_code},
    {"acceptor_gssenc_request_length_9", case_gssenc_request_length_9},
    {"acceptor_eof_before_startup", case_eof_before_startup},
    {"acceptor_token_length_0", case_token_length_0},
    {"acceptor_token_length_65532_accepted", case_token_length_65532_accepted},
    {"acceptor_token_length_65533", case_token_length_65533},
    {"acceptor_token_length_2147483647", case_token_length_2147483647},
    {"acceptor_truncated_token_eof", case_truncated_token_eof},
    {"acceptor_bytes_after_first_token", case_bytes_after_first_token},
    {"acceptor_ticket_for_other_service", case_ticket_for_other_service},
    {"acceptor_escape_in_ticket_service_name", case_escape_in_ticket_service_name},
    {"acceptor_rewritten_service_name_accepted", case_rewritten_service_name_accepted},
    {"acceptor_rewritten_service_name_restricted", case_rewritten_service_name_restricted},
    {"acceptor_gssenc_request_after_decline", case_gssenc_request_after_decline},
    {"acceptor_stalled_handshake", case_stalled_handshake},
    {"acceptor_integrity_only_packet", case_integrity_only_packet},
    {"acceptor_data_packet_16385", case_data_packet_16385},
    {"acceptor_plaintext_startup_after_handshake", case_plaintext_startup_after_handshake},
    {"acceptor_eof_message_names_client", case_eof_message_names_client},
    {"acceptor_non_mutual_client_paused", case_non_mutual_client_paused},
    {"acceptor_non_mutual_client_pipelined", case_non_mutual_client_pipelined},
    {"acceptor_one_byte_writes", case_one_byte_writes},
};
const size_t acceptor_case_count = sizeof acceptor_cases / sizeof acceptor_cases[0];
