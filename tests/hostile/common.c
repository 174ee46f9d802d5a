#define _GNU_SOURCE

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gssapi/gssapi_ext.h>

int check_failures;

static pthread_mutex_t output_lock = PTHREAD_MUTEX_INITIALIZER;

static void vreport(const char *file, int line, const char *format, va_list args)
{
    pthread_mutex_lock(&output_lock);
    printf("    %s:%d: ", file, line);
    vprintf(format, args);
    printf("\n");
    fflush(stdout);
    pthread_mutex_unlock(&output_lock);
}

void fail_check(const char *file, int line, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vreport(file, line, format, args);
    va_end(args);
    check_failures++;
}

void abort_case(const char *file, int line, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vreport(file, line, format, args);
    va_end(args);
    exit(1);
}

/* --- byte buffers and sockets ----------------------------------------- */

void bytes_append(struct bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *grown = realloc(b->data, cap);
        if (grown == NULL)
            abort_case(__FILE__, __LINE__, "out of memory");
        b->data = grown;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

void bytes_append_u32(struct bytes *b, uint32_t value)
{
    uint8_t word[4] = {(uint8_t)(value >> 24), (uint8_t)(value >> 16), (uint8_t)(value >> 8), (uint8_t)value};
    bytes_append(b, word, 4);
}

void bytes_append_frame(struct bytes *b, const void *token, size_t len)
{
    bytes_append_u32(b, (uint32_t)len);
    bytes_append(b, token, len);
}

void bytes_free(struct bytes *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void make_socketpair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        abort_case(__FILE__, __LINE__, "socketpair failed: %s", strerror(errno));
}

void set_nonblocking(int fd, bool on)
{
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

bool read_exact(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool write_bytewise(int fd, const void *buf, size_t len, unsigned pause_us)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++) {
        if (!write_all(fd, p + i, 1))
            return false;
        if (pause_us > 0)
            usleep(pause_us);
    }
    return true;
}

bool read_frame(int fd, struct bytes *token, size_t max_token)
{
    uint8_t word[4];
    if (!read_exact(fd, word, 4))
        return false;
    size_t len = ((size_t)word[0] << 24) | ((size_t)word[1] << 16) | ((size_t)word[2] << 8) | word[3];
    if (len == 0 || len > max_token)
        return false;
    token->len = 0;
    uint8_t *body = malloc(len);
    if (body == NULL)
        return false;
    bool ok = read_exact(fd, body, len);
    if (ok)
        bytes_append(token, body, len);
    free(body);
    return ok;
}

long pending_bytes(int fd)
{
    uint8_t buf[4096];
    long total = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            total += n;
            continue;
        }
        if (n == 0)
            return total > 0 ? total : -2;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return total;
        if (errno == EINTR)
            continue;
        return -1;
    }
}

/* --- GSSAPI ------------------------------------------------------------ */

static void append_status(OM_uint32 code, int type, char *out, size_t len)
{
    OM_uint32 message_context = 0;
    do {
        OM_uint32 minor;
        gss_buffer_desc text = GSS_C_EMPTY_BUFFER;
        if (GSS_ERROR(gss_display_status(&minor, code, type, GSS_C_NO_OID, &message_context, &text)))
            return;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%.*s", used ? "; " : "", (int)text.length, (const char *)text.value);
        gss_release_buffer(&minor, &text);
    } while (message_context != 0);
}

void gss_status_text(OM_uint32 major, OM_uint32 minor, char *out, size_t len)
{
    out[0] = '\0';
    append_status(major, GSS_C_GSS_CODE, out, len);
    if (minor != 0)
        append_status(minor, GSS_C_MECH_CODE, out, len);
}

gss_cred_id_t acceptor_credential(void)
{
    const char *keytab = getenv("PGGSS_SERVER_KEYTAB");
    REQUIRE(keytab != NULL, "PGGSS_SERVER_KEYTAB is not set: run inside tests/fixture/pgkrb run");
    gss_key_value_element_desc element = {"keytab", keytab};
    gss_key_value_set_desc store = {1, &element};
    OM_uint32 major, minor;
    gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
    major = gss_acquire_cred_from(&minor, GSS_C_NO_NAME, GSS_C_INDEFINITE, GSS_C_NO_OID_SET, GSS_C_ACCEPT, &store,
                                  &cred, NULL, NULL);
    if (GSS_ERROR(major)) {
        char text[512];
        gss_status_text(major, minor, text, sizeof text);
        abort_case(__FILE__, __LINE__, "gss_acquire_cred_from(%s) failed: %s", keytab, text);
    }
    return cred;
}

gss_name_t service_name(const char *service)
{
    char text[128];
    snprintf(text, sizeof text, "%s@localhost", service);
    gss_buffer_desc buffer = {strlen(text), text};
    OM_uint32 minor;
    gss_name_t name = GSS_C_NO_NAME;
    OM_uint32 major = gss_import_name(&minor, &buffer, GSS_C_NT_HOSTBASED_SERVICE, &name);
    if (GSS_ERROR(major))
        abort_case(__FILE__, __LINE__, "gss_import_name(%s) failed", text);
    return name;
}

bool wrap_frame(gss_ctx_id_t ctx, int conf_req, const void *data, size_t len, struct bytes *out, char *error,
                size_t error_len)
{
    OM_uint32 major, minor;
    int conf_state = -1;
    gss_buffer_desc input = {len, (void *)data};
    gss_buffer_desc output = GSS_C_EMPTY_BUFFER;
    major = gss_wrap(&minor, ctx, conf_req, GSS_C_QOP_DEFAULT, &input, &conf_state, &output);
    if (major != GSS_S_COMPLETE) {
        gss_status_text(major, minor, error, error_len);
        return false;
    }
    if (conf_state != conf_req) {
        snprintf(error, error_len, "gss_wrap returned conf_state %d for conf_req %d", conf_state, conf_req);
        gss_release_buffer(&minor, &output);
        return false;
    }
    bytes_append_frame(out, output.value, output.length);
    gss_release_buffer(&minor, &output);
    return true;
}

bool unwrap_token(gss_ctx_id_t ctx, const struct bytes *token, struct bytes *out, char *error, size_t error_len)
{
    OM_uint32 major, minor;
    int conf_state = 0;
    gss_buffer_desc input = {token->len, token->data};
    gss_buffer_desc output = GSS_C_EMPTY_BUFFER;
    major = gss_unwrap(&minor, ctx, &input, &output, &conf_state, NULL);
    if (major != GSS_S_COMPLETE) {
        gss_status_text(major, minor, error, error_len);
        gss_release_buffer(&minor, &output);
        return false;
    }
    if (!conf_state) {
        snprintf(error, error_len, "token without confidentiality");
        gss_release_buffer(&minor, &output);
        return false;
    }
    bytes_append(out, output.value, output.length);
    gss_release_buffer(&minor, &output);
    return true;
}

void delete_context(gss_ctx_id_t *ctx)
{
    if (*ctx != GSS_C_NO_CONTEXT) {
        OM_uint32 minor;
        gss_delete_sec_context(&minor, ctx, GSS_C_NO_BUFFER);
        *ctx = GSS_C_NO_CONTEXT;
    }
}

bool establish_pair(struct context_pair *pair, char *error, size_t error_len)
{
    OM_uint32 major, minor;
    memset(pair, 0, sizeof *pair);
    gss_name_t target = service_name("postgres");
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &pair->initiator, target, GSS_C_NO_OID, CLIENT_FLAGS,
                                 0, GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
    gss_release_name(&minor, &target);
    if (major != GSS_S_CONTINUE_NEEDED) {
        gss_status_text(major, minor, error, error_len);
        return false;
    }
    bytes_append(&pair->first_token, out.value, out.length);
    gss_release_buffer(&minor, &out);

    gss_cred_id_t cred = acceptor_credential();
    gss_buffer_desc in = {pair->first_token.len, pair->first_token.data};
    major = gss_accept_sec_context(&minor, &pair->acceptor, cred, &in, GSS_C_NO_CHANNEL_BINDINGS, NULL, NULL, &out,
                                   NULL, NULL, NULL);
    gss_release_cred(&minor, &cred);
    if (major != GSS_S_COMPLETE) {
        gss_status_text(major, minor, error, error_len);
        return false;
    }
    bytes_append(&pair->reply_token, out.value, out.length);
    gss_release_buffer(&minor, &out);

    gss_buffer_desc reply = {pair->reply_token.len, pair->reply_token.data};
    target = service_name("postgres");
    major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &pair->initiator, target, GSS_C_NO_OID, CLIENT_FLAGS,
                                 0, GSS_C_NO_CHANNEL_BINDINGS, &reply, NULL, &out, NULL, NULL);
    gss_release_name(&minor, &target);
    gss_release_buffer(&minor, &out);
    if (major != GSS_S_COMPLETE) {
        gss_status_text(major, minor, error, error_len);
        return false;
    }
    return true;
}

void release_pair(struct context_pair *pair)
{
    delete_context(&pair->initiator);
    delete_context(&pair->acceptor);
    bytes_free(&pair->first_token);
    bytes_free(&pair->reply_token);
}

/* --- fake peers -------------------------------------------------------- */

const uint8_t gssenc_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30};

void startup_message(struct bytes *out)
{
    static const char body[] = "user\0tester\0database\0tester\0";
    bytes_append_u32(out, (uint32_t)(8 + sizeof body));
    bytes_append_u32(out, 196608);
    bytes_append(out, body, sizeof body);
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    p->run(p);
    return NULL;
}

void peer_start(struct peer *p)
{
    if (pthread_create(&p->thread, NULL, peer_main, p) != 0)
        abort_case(__FILE__, __LINE__, "pthread_create failed");
}

void peer_finish(struct peer *p)
{
    pthread_join(p->thread, NULL);
    EXPECT(p->error[0] == '\0', "fake peer failed: %s", p->error);
    delete_context(&p->ctx);
    bytes_free(&p->received);
}

void peer_fail(struct peer *p, const char *format, ...)
{
    if (p->error[0] != '\0')
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(p->error, sizeof p->error, format, args);
    va_end(args);
}

bool server_read_request(struct peer *p)
{
    uint8_t request[8];
    if (!read_exact(p->fd, request, sizeof request)) {
        peer_fail(p, "no GSSENCRequest from the library");
        return false;
    }
    if (memcmp(request, gssenc_request, sizeof request) != 0) {
        peer_fail(p, "the library's first 8 bytes are not a GSSENCRequest");
        return false;
    }
    return true;
}

static bool send_bytes(int fd, const void *data, size_t len, bool bytewise)
{
    return bytewise ? write_bytewise(fd, data, len, 200) : write_all(fd, data, len);
}

bool server_handshake(struct peer *p, bool bytewise)
{
    return server_handshake_with_trailer(p, bytewise, NULL, 0);
}

bool server_handshake_with_trailer(struct peer *p, bool bytewise, const void *trailer, size_t trailer_len)
{
    if (!server_read_request(p))
        return false;
    if (!send_bytes(p->fd, "G", 1, bytewise)) {
        peer_fail(p, "could not send 'G'");
        return false;
    }
    struct bytes token = {0};
    if (!read_frame(p->fd, &token, 65532)) {
        peer_fail(p, "no valid handshake token from the library");
        bytes_free(&token);
        return false;
    }
    gss_cred_id_t cred = acceptor_credential();
    OM_uint32 major, minor;
    gss_buffer_desc in = {token.len, token.data};
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    major = gss_accept_sec_context(&minor, &p->ctx, cred, &in, GSS_C_NO_CHANNEL_BINDINGS, NULL, NULL, &out, NULL,
                                   NULL, NULL);
    gss_release_cred(&minor, &cred);
    bytes_free(&token);
    if (major != GSS_S_COMPLETE) {
        char text[512];
        gss_status_text(major, minor, text, sizeof text);
        peer_fail(p, "gss_accept_sec_context failed: %s", text);
        gss_release_buffer(&minor, &out);
        return false;
    }
    struct bytes frame = {0};
    bytes_append_frame(&frame, out.value, out.length);
    gss_release_buffer(&minor, &out);
    bytes_append(&frame, trailer, trailer_len);
    bool sent = send_bytes(p->fd, frame.data, frame.len, bytewise);
    bytes_free(&frame);
    if (!sent)
        peer_fail(p, "could not send the handshake reply");
    return sent;
}

bool client_handshake(struct peer *p, const char *service, bool bytewise)
{
    if (!send_bytes(p->fd, gssenc_request, sizeof gssenc_request, bytewise)) {
        peer_fail(p, "could not send GSSENCRequest");
        return false;
    }
    uint8_t answer;
    if (!read_exact(p->fd, &answer, 1) || answer != 'G') {
        peer_fail(p, "the library did not answer 'G'");
        return false;
    }
    OM_uint32 major, minor;
    gss_name_t target = service_name(service);
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &p->ctx, target, GSS_C_NO_OID, CLIENT_FLAGS, 0,
                                 GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
    if (major != GSS_S_CONTINUE_NEEDED) {
        char text[512];
        gss_status_text(major, minor, text, sizeof text);
        peer_fail(p, "gss_init_sec_context failed: %s", text);
        gss_release_name(&minor, &target);
        return false;
    }
    struct bytes frame = {0};
    bytes_append_frame(&frame, out.value, out.length);
    gss_release_buffer(&minor, &out);
    bool sent = send_bytes(p->fd, frame.data, frame.len, bytewise);
    bytes_free(&frame);
    if (!sent) {
        peer_fail(p, "could not send the first token");
        gss_release_name(&minor, &target);
        return false;
    }

    struct bytes reply = {0};
    if (!read_frame(p->fd, &reply, 65532)) {
        peer_fail(p, "no handshake reply from the library");
        gss_release_name(&minor, &target);
        bytes_free(&reply);
        return false;
    }
    gss_buffer_desc in = {reply.len, reply.data};
    major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &p->ctx, target, GSS_C_NO_OID, CLIENT_FLAGS, 0,
                                 GSS_C_NO_CHANNEL_BINDINGS, &in, NULL, &out, NULL, NULL);
    gss_release_name(&minor, &target);
    gss_release_buffer(&minor, &out);
    bytes_free(&reply);
    if (major != GSS_S_COMPLETE) {
        char text[512];
        gss_status_text(major, minor, text, sizeof text);
        peer_fail(p, "gss_init_sec_context (reply) failed: %s", text);
        return false;
    }
    return true;
}

/* --- the library side -------------------------------------------------- */

pggss_conn *library_client(int fd, const char *gssencmode)
{
    pggss_conn *conn = NULL;
    REQUIRE(pggss_conn_new(&conn) == PGGSS_RESULT_OK, "pggss_conn_new failed");
    REQUIRE(pggss_conn_set_param(conn, "host", "localhost") == PGGSS_RESULT_OK, "set host failed");
    REQUIRE(pggss_conn_set_param(conn, "gssencmode", gssencmode) == PGGSS_RESULT_OK, "set gssencmode failed");
    REQUIRE(pggss_conn_set_fd(conn, fd) == PGGSS_RESULT_OK, "set_fd failed");
    return conn;
}

pggss_conn *library_acceptor(int fd)
{
    const char *keytab = getenv("PGGSS_SERVER_KEYTAB");
    REQUIRE(keytab != NULL, "PGGSS_SERVER_KEYTAB is not set: run inside tests/fixture/pgkrb run");
    pggss_conn *conn = NULL;
    REQUIRE(pggss_acceptor_new(&conn) == PGGSS_RESULT_OK, "pggss_acceptor_new failed");
    REQUIRE(pggss_acceptor_set_keytab(conn, keytab) == PGGSS_RESULT_OK, "set_keytab failed");
    REQUIRE(pggss_conn_set_fd(conn, fd) == PGGSS_RESULT_OK, "set_fd failed");
    return conn;
}

void expect_clean_message(const char *message)
{
    /* C0 controls, DEL, and C1 controls (U+0080 to U+009F, UTF-8 C2 80 to C2 9F), which terminals interpret. */
    for (const unsigned char *c = (const unsigned char *)message; *c; c++) {
        bool c1 = c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f;
        if (*c < 0x20 || *c == 0x7f || c1) {
            fail_check(__FILE__, __LINE__, "error message has a control character at offset %ld (byte 0x%02x): \"%s\"",
                       (long)((const char *)c - message), *c, message);
            return;
        }
    }
}

#define SENTINEL 0xA5

/* With HOSTILE_VERBOSE set, prints each observed error message, for the docs. */
static void show_message(const char *where, pggss_conn *conn)
{
    if (getenv("HOSTILE_VERBOSE") != NULL)
        printf("    %s: result %d, message \"%s\"\n", where, (int)pggss_conn_last_result(conn),
               pggss_conn_error_message(conn));
}

void expect_read_rejected(pggss_conn *conn, int expected_errno, pggss_result expected, const char *fragment)
{
    uint8_t buf[512];
    memset(buf, SENTINEL, sizeof buf);
    errno = 0;
    ssize_t n = pggss_conn_read(conn, buf, sizeof buf);
    int saved_errno = errno;
    show_message("read", conn);
    EXPECT(n == -1, "pggss_conn_read returned %zd, expected -1", n);
    EXPECT(saved_errno == expected_errno, "errno is %d (%s), expected %d (%s)", saved_errno, strerror(saved_errno),
           expected_errno, strerror(expected_errno));
    EXPECT_INT(pggss_conn_last_result(conn), expected);
    const char *message = pggss_conn_error_message(conn);
    EXPECT_CONTAINS(message, fragment);
    expect_clean_message(message);
    for (size_t i = 0; i < sizeof buf; i++) {
        if (buf[i] != SENTINEL) {
            fail_check(__FILE__, __LINE__, "the read changed byte %zu of the caller's buffer to 0x%02x", i, buf[i]);
            break;
        }
    }
    EXPECT_INT(pggss_conn_pending(conn), 0);
}

void expect_read_exact(pggss_conn *conn, const void *data, size_t len)
{
    uint8_t *buf = malloc(len + 64);
    REQUIRE(buf != NULL, "out of memory");
    memset(buf, SENTINEL, len + 64);
    size_t got = 0;
    while (got < len) {
        ssize_t n = pggss_conn_read(conn, buf + got, len + 64 - got);
        if (n <= 0) {
            fail_check(__FILE__, __LINE__, "pggss_conn_read returned %zd (errno %d, result %d, \"%s\") after %zu of %zu bytes",
                       n, errno, (int)pggss_conn_last_result(conn), pggss_conn_error_message(conn), got, len);
            free(buf);
            return;
        }
        got += (size_t)n;
    }
    EXPECT(got == len, "read %zu bytes, expected %zu", got, len);
    EXPECT(memcmp(buf, data, len) == 0, "the plaintext read differs from the plaintext sent");
    for (size_t i = len; i < len + 64; i++) {
        if (buf[i] != SENTINEL) {
            fail_check(__FILE__, __LINE__, "the read wrote past the plaintext, at byte %zu", i);
            break;
        }
    }
    free(buf);
}

void expect_negotiation_failed(pggss_conn *conn, bool acceptor, int poll_status, pggss_result expected,
                               const char *fragment)
{
    show_message("poll", conn);
    EXPECT_INT(poll_status, PGGSS_POLLING_STATUS_FAILED);
    EXPECT_INT(pggss_conn_last_result(conn), expected);
    const char *message = pggss_conn_error_message(conn);
    EXPECT_CONTAINS(message, fragment);
    expect_clean_message(message);
    EXPECT_INT(pggss_conn_outcome(conn), PGGSS_OUTCOME_FAILED);
    EXPECT(!pggss_conn_encryption_in_use(conn), "encryption_in_use is true after a failed negotiation");
    EXPECT(pggss_conn_gss_context(conn) == NULL, "a failed connection still exposes a GSSAPI context");
    /* Polling again reports the same failure instead of starting over. */
    int again = acceptor ? pggss_conn_accept_poll(conn) : pggss_conn_connect_poll(conn);
    EXPECT_INT(again, PGGSS_POLLING_STATUS_FAILED);
    EXPECT_INT(pggss_conn_last_result(conn), expected);
    EXPECT_CONTAINS(pggss_conn_error_message(conn), fragment);
    expect_read_rejected(conn, EINVAL, PGGSS_RESULT_INVALID_STATE, "failed");
}

void expect_fd_untouched(int fd, int flags)
{
    int now = fcntl(fd, F_GETFL);
    EXPECT(now != -1, "the library's socket was closed (fcntl: %s)", strerror(errno));
    EXPECT(now == flags, "the socket's status flags changed from 0x%x to 0x%x", flags, now);
}

void expect_nothing_sent(int peer_fd)
{
    long pending = pending_bytes(peer_fd);
    EXPECT(pending == 0, "the library sent %ld more bytes after it failed (-2 means it closed the socket)", pending);
}
