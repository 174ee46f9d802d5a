/*
 * One client connection of pggss-proxy: the GSSAPI handshake through the
 * pggssenc acceptor, the check of the client's StartupMessage, the upstream
 * connection, and the relay in both directions with bounded buffers.
 */

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy.h"

enum phase {
    /* pggss_conn_accept_poll reads the first packet and runs the handshake. */
    PHASE_NEGOTIATING,
    /* Sending 'N' to decline an SSLRequest. The client's next packet follows. */
    PHASE_DECLINING_SSL,
    /* Encrypted: reading the client's StartupMessage. */
    PHASE_READING_STARTUP,
    /* Non-blocking connect(2) to the upstream server in progress. */
    PHASE_CONNECTING,
    /* Forwarding bytes both ways. */
    PHASE_RELAYING,
    /* Sending an ErrorResponse to the client before closing. */
    PHASE_REJECTING,
    /*
     * The ErrorResponse has been sent. Reading until the client closes keeps
     * unread input from resetting the connection before the client reads the error.
     */
    PHASE_LINGERING,
    PHASE_FINISHED,
};

struct session {
    const struct proxy_config *config;
    enum phase phase;
    int client_fd;
    int upstream_fd;
    pggss_conn *gss;

    char client_address[80];
    char principal[256];
    struct startup_info startup;
    /* "encrypted" or "plaintext" once known, else NULL. */
    const char *mode;
    bool ssl_declined;
    bool cancel_request;

    struct buffer to_upstream;
    struct buffer to_client;
    bool client_eof;
    bool upstream_eof;
    struct message_tracker tracker;
    uint64_t bytes_from_client;
    uint64_t bytes_to_client;

    int64_t started_ms;
    /* Monotonic time at which the current phase times out, or 0 for none. */
    int64_t deadline_ms;
    /* Events to poll for on each socket. */
    short client_events;
    short upstream_events;
    /* Set when the pump stopped before running out of work, so the session runs again without waiting. */
    bool ready;
    /* The outcome logged once a rejection has been sent. */
    char pending_outcome[512];
};

static size_t buffer_used(const struct buffer *buffer)
{
    return buffer->end - buffer->start;
}

static size_t buffer_space(const struct buffer *buffer)
{
    return RELAY_BUFFER_SIZE - buffer_used(buffer);
}

/*
 * Returns the free space after the queued bytes, moving them to the front
 * first when that makes room. Moving keeps their order and content, so the
 * bytes offered to a retried pggss_conn_write are the same.
 */
static uint8_t *buffer_tail(struct buffer *buffer, size_t *space)
{
    if (buffer->start > 0 && (buffer->end == RELAY_BUFFER_SIZE || buffer->start >= RELAY_BUFFER_SIZE / 2)) {
        memmove(buffer->data, buffer->data + buffer->start, buffer_used(buffer));
        buffer->end -= buffer->start;
        buffer->start = 0;
    }
    *space = RELAY_BUFFER_SIZE - buffer->end;
    return buffer->data + buffer->end;
}

static void buffer_consume(struct buffer *buffer, size_t count)
{
    buffer->start += count;
    if (buffer->start == buffer->end)
        buffer->start = buffer->end = 0;
}

static bool buffer_append(struct buffer *buffer, const uint8_t *data, size_t length)
{
    size_t space;
    uint8_t *tail = buffer_tail(buffer, &space);
    if (length > space)
        return false;
    memcpy(tail, data, length);
    buffer->end += length;
    return true;
}

static bool would_block(int error)
{
    return error == EAGAIN || error == EWOULDBLOCK;
}

/* Logs the session's line and releases its sockets and pggssenc state. */
static void finish(struct session *session, const char *closed_by, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct session *session, const char *closed_by, const char *format, ...)
{
    if (session->phase == PHASE_FINISHED)
        return;

    char outcome[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(outcome, sizeof(outcome), format, args);
    va_end(args);

    char fields[1024] = "";
    append_field(fields, sizeof(fields), "client", session->client_address);
    append_field(fields, sizeof(fields), "principal", session->principal);
    append_field(fields, sizeof(fields), "user", session->startup.user);
    append_field(fields, sizeof(fields), "database", session->startup.database);
    append_field(fields, sizeof(fields), "mode", session->mode);
    log_line("connection%s from_client=%llu to_client=%llu duration_ms=%lld closed_by=%s outcome=%s", fields,
             (unsigned long long)session->bytes_from_client, (unsigned long long)session->bytes_to_client,
             (long long)(monotonic_ms() - session->started_ms), closed_by, outcome);

    pggss_conn_free(session->gss);
    session->gss = NULL;
    if (session->client_fd >= 0)
        close(session->client_fd);
    if (session->upstream_fd >= 0)
        close(session->upstream_fd);
    session->client_fd = -1;
    session->upstream_fd = -1;
    session->phase = PHASE_FINISHED;
}

/* Ends the session with a pggssenc failure: its result text and message. */
static void finish_gss_failure(struct session *session, const char *during)
{
    char result_text[128];
    pggss_result_text(pggss_conn_last_result(session->gss), result_text, sizeof(result_text));
    finish(session, "proxy", "error: %s failed (%s): %s", during, result_text,
           pggss_conn_error_message(session->gss));
}

/*
 * Sends the client a FATAL ErrorResponse, then closes. `outcome` is the
 * outcome to log, such as "rejected: ..." or "error: ...". Any bytes queued
 * for the client are dropped first, because the ErrorResponse replaces them.
 */
static void reject(struct session *session, const char *sqlstate, const char *message, const char *outcome)
{
    uint8_t packet[1024];
    size_t length = build_error_response(packet, sizeof(packet), sqlstate, message);

    snprintf(session->pending_outcome, sizeof(session->pending_outcome), "%s", outcome);
    session->to_client.start = session->to_client.end = 0;
    if (length == 0 || !buffer_append(&session->to_client, packet, length)) {
        finish(session, "proxy", "%s", outcome);
        return;
    }
    if (session->upstream_fd >= 0) {
        close(session->upstream_fd);
        session->upstream_fd = -1;
    }
    session->phase = PHASE_REJECTING;
    session->deadline_ms = monotonic_ms() + DRAIN_TIMEOUT_MS;
}

static int create_acceptor(struct session *session, char *error, size_t error_size)
{
    pggss_result result = pggss_acceptor_new(&session->gss);
    if (result != PGGSS_RESULT_OK) {
        snprintf(error, error_size, "pggss_acceptor_new failed with result %u", (unsigned)result);
        return -1;
    }
    if (session->config->keytab != NULL &&
        pggss_acceptor_set_keytab(session->gss, session->config->keytab) != PGGSS_RESULT_OK) {
        snprintf(error, error_size, "invalid keytab: %s", pggss_conn_error_message(session->gss));
        return -1;
    }
    if (session->config->service != NULL &&
        pggss_acceptor_set_service(session->gss, session->config->service) != PGGSS_RESULT_OK) {
        snprintf(error, error_size, "invalid service: %s", pggss_conn_error_message(session->gss));
        return -1;
    }
    if (pggss_conn_set_fd(session->gss, session->client_fd) != PGGSS_RESULT_OK) {
        snprintf(error, error_size, "pggss_conn_set_fd failed: %s", pggss_conn_error_message(session->gss));
        return -1;
    }
    return 0;
}

struct session *session_new(const struct proxy_config *config, int client_fd, const struct sockaddr *addr,
                            socklen_t addr_len, int64_t now)
{
    struct session *session = calloc(1, sizeof(*session));
    if (session == NULL) {
        char address[80];
        format_address(addr, addr_len, address, sizeof(address));
        log_line("connection client=%s principal=- user=- database=- mode=- from_client=0 to_client=0 duration_ms=0 "
                 "closed_by=proxy outcome=error: out of memory for a new session",
                 address);
        close(client_fd);
        return NULL;
    }
    session->config = config;
    session->client_fd = client_fd;
    session->upstream_fd = -1;
    session->started_ms = now;
    session->deadline_ms = now + config->handshake_timeout_ms;
    session->phase = PHASE_NEGOTIATING;
    format_address(addr, addr_len, session->client_address, sizeof(session->client_address));

    int one = 1;
    if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)
        setsockopt(client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    char error[512];
    if (create_acceptor(session, error, sizeof(error)) != 0) {
        finish(session, "proxy", "error: %s", error);
        session_free(session);
        return NULL;
    }
    session->ready = true;
    return session;
}

/* Opens the upstream connection. The relay starts once it is established. */
static void connect_upstream(struct session *session)
{
    const struct proxy_config *config = session->config;
    int fd = socket(config->upstream_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        char outcome[512];
        snprintf(outcome, sizeof(outcome), "error: could not create a socket for upstream %s: %s",
                 config->upstream_text, strerror(errno));
        reject(session, "08006", "pggss-proxy could not connect to the upstream server", outcome);
        return;
    }
    session->upstream_fd = fd;
    if (config->upstream_addr.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    session->phase = PHASE_CONNECTING;
    session->deadline_ms = monotonic_ms() + config->handshake_timeout_ms;
}

/*
 * Advances a non-blocking connect. Calling connect(2) again reports the
 * state without waiting for an event: EISCONN once connected, EALREADY or
 * EINPROGRESS while pending, or the connection error.
 */
static bool step_connecting(struct session *session)
{
    const struct proxy_config *config = session->config;
    int rc = connect(session->upstream_fd, (const struct sockaddr *)&config->upstream_addr, config->upstream_addr_len);
    if (rc == 0 || errno == EISCONN) {
        session->phase = PHASE_RELAYING;
        session->deadline_ms = 0;
        return true;
    }
    if (errno == EINPROGRESS || errno == EALREADY || errno == EINTR) {
        session->upstream_events = POLLOUT;
        return false;
    }
    /*
     * NOTE: on a Unix socket, EAGAIN means the server's listen queue is
     * full. The client then gets the 08006 error below rather than a retry.
     */
    char outcome[512];
    snprintf(outcome, sizeof(outcome), "error: could not connect to upstream %s: %s", config->upstream_text,
             strerror(errno));
    reject(session, "08006", "pggss-proxy could not connect to the upstream server", outcome);
    return true;
}

/*
 * Checks the StartupMessage of an encrypted client: the user must be the
 * authenticated principal without its realm, as PostgreSQL's gss method
 * with include_realm=0 requires. Returns false after rejecting the client.
 */
static bool authorize_encrypted_user(struct session *session)
{
    char user[256];
    size_t user_length = 0;
    if (pggss_conn_client_user(session->gss, user, sizeof(user), &user_length) != PGGSS_RESULT_OK) {
        finish_gss_failure(session, "reading the client principal");
        return false;
    }

    char message[512];
    char outcome[768];
    if (!session->startup.has_user) {
        snprintf(message, sizeof(message), "no PostgreSQL user name specified in startup packet");
        snprintf(outcome, sizeof(outcome), "rejected: %s", message);
        reject(session, "28000", message, outcome);
        return false;
    }
    if (strcmp(session->startup.user, user) != 0) {
        snprintf(message, sizeof(message), "GSSAPI principal \"%s\" may not connect as user \"%s\"",
                 session->principal, session->startup.user);
        snprintf(outcome, sizeof(outcome), "rejected: %s", message);
        reject(session, "28000", message, outcome);
        return false;
    }
    return true;
}

/* Checks the realm of an authenticated principal against --realm. */
static bool authorize_realm(struct session *session)
{
    const char *realm = session->config->realm;
    if (realm == NULL)
        return true;
    const char *at = strrchr(session->principal, '@');
    if (at != NULL && strcmp(at + 1, realm) == 0)
        return true;

    char message[512];
    char outcome[768];
    snprintf(message, sizeof(message), "GSSAPI principal \"%s\" is not in realm %s", session->principal, realm);
    snprintf(outcome, sizeof(outcome), "rejected: %s", message);
    reject(session, "28000", message, outcome);
    return false;
}

/* Handles the client's plaintext first packet (no GSSENCRequest). */
static void handle_plaintext_packet(struct session *session)
{
    pggss_startup_kind kind;
    const uint8_t *data = NULL;
    size_t length = 0;
    size_t packet_length = 0;
    if (pggss_conn_startup_packet(session->gss, &kind, &data, &length, &packet_length) != PGGSS_RESULT_OK) {
        finish_gss_failure(session, "reading the startup packet");
        return;
    }

    if (kind == PGGSS_STARTUP_KIND_SSL_REQUEST) {
        if (session->ssl_declined) {
            finish(session, "proxy", "error: client sent SSLRequest again after it was declined");
            return;
        }
        if (length > packet_length) {
            finish(session, "proxy",
                   "error: client sent %zu bytes after SSLRequest before it was answered (a pipelined "
                   "message or injected plaintext)",
                   length - packet_length);
            return;
        }
        session->ssl_declined = true;
        buffer_append(&session->to_client, (const uint8_t *)"N", 1);
        session->phase = PHASE_DECLINING_SSL;
        return;
    }

    session->mode = "plaintext";
    if (kind == PGGSS_STARTUP_KIND_CANCEL_REQUEST) {
        /* A CancelRequest carries only the key that the server issued to the session it cancels, so it passes in every mode. */
        session->cancel_request = true;
    } else {
        char error[256];
        if (parse_startup_message(data, packet_length, &session->startup, error, sizeof(error)) != 0) {
            char outcome[512];
            snprintf(outcome, sizeof(outcome), "rejected: %s", error);
            reject(session, "08P01", error, outcome);
            return;
        }
        if (session->config->require_gss) {
            reject(session, "28000",
                   "GSSAPI encryption is required by pggss-proxy; connect with gssencmode=require",
                   "rejected: plaintext StartupMessage, but GSSAPI encryption is required");
            return;
        }
        tracker_feed(&session->tracker, data + packet_length, length - packet_length);
    }

    if (!buffer_append(&session->to_upstream, data, length)) {
        finish(session, "proxy", "error: client sent %zu bytes with its startup packet, more than the buffer holds",
               length);
        return;
    }
    session->bytes_from_client += length;
    connect_upstream(session);
}

/* Drives pggss_conn_accept_poll. Returns true when the phase changed. */
static bool step_negotiating(struct session *session)
{
    int status = pggss_conn_accept_poll(session->gss);
    switch (status) {
    case PGGSS_POLLING_STATUS_READING:
        session->client_events = POLLIN;
        return false;
    case PGGSS_POLLING_STATUS_WRITING:
        session->client_events = POLLOUT;
        return false;
    case PGGSS_POLLING_STATUS_OK:
        break;
    default:
        finish_gss_failure(session, "GSSAPI negotiation");
        return true;
    }

    pggss_outcome outcome = pggss_conn_outcome(session->gss);
    if (outcome == PGGSS_OUTCOME_ENCRYPTED) {
        size_t length = 0;
        session->mode = "encrypted";
        if (pggss_conn_client_principal(session->gss, session->principal, sizeof(session->principal), &length) !=
            PGGSS_RESULT_OK) {
            finish_gss_failure(session, "reading the client principal");
            return true;
        }
        if (authorize_realm(session))
            session->phase = PHASE_READING_STARTUP;
        return true;
    }
    if (outcome == PGGSS_OUTCOME_NOT_REQUESTED || outcome == PGGSS_OUTCOME_DECLINED) {
        handle_plaintext_packet(session);
        return true;
    }
    finish(session, "proxy", "error: pggss_conn_accept_poll returned OK with unexpected outcome %d", (int)outcome);
    return true;
}

/*
 * Writes queued bytes to the client through pggssenc. After EAGAIN the
 * next call offers the same bytes from the same start (the buffer only
 * grows at its end until bytes are reported written), which is the retry
 * rule of pggss_conn_write. Returns 1 on progress, 0 when blocked, -1
 * after finishing the session on an error.
 */
static int flush_to_client(struct session *session)
{
    size_t queued = buffer_used(&session->to_client);
    if (queued == 0)
        return 0;
    ssize_t written = pggss_conn_write(session->gss, session->to_client.data + session->to_client.start, queued);
    if (written > 0) {
        buffer_consume(&session->to_client, (size_t)written);
        if (session->phase == PHASE_RELAYING)
            session->bytes_to_client += (uint64_t)written;
        return 1;
    }
    if (written < 0 && would_block(errno)) {
        session->client_events |= POLLOUT;
        return 0;
    }
    finish(session, "proxy", "error: sending to the client failed: %s", pggss_conn_error_message(session->gss));
    return -1;
}

static bool step_declining_ssl(struct session *session)
{
    if (flush_to_client(session) < 0)
        return true;
    if (buffer_used(&session->to_client) > 0)
        return false;

    /* 'N' has left: a fresh acceptor reads the client's next packet, which may be a GSSENCRequest. */
    pggss_conn_free(session->gss);
    session->gss = NULL;
    char error[512];
    if (create_acceptor(session, error, sizeof(error)) != 0) {
        finish(session, "proxy", "error: %s", error);
        return true;
    }
    session->phase = PHASE_NEGOTIATING;
    return true;
}

/* Inspects a complete StartupMessage or CancelRequest sent inside the encryption. */
static void handle_encrypted_startup(struct session *session, size_t packet_length)
{
    const uint8_t *packet = session->to_upstream.data + session->to_upstream.start;
    uint32_t code = read_be32(packet + 4);
    char message[512];
    char outcome[768];

    if (code == CANCEL_REQUEST_CODE && packet_length == 16) {
        session->cancel_request = true;
        connect_upstream(session);
        return;
    }
    if (code >> 16 != 3) {
        snprintf(message, sizeof(message),
                 "unsupported startup packet code %u inside GSSAPI encryption; expected protocol 3.x", code);
        snprintf(outcome, sizeof(outcome), "rejected: %s", message);
        reject(session, "08P01", message, outcome);
        return;
    }
    if (parse_startup_message(packet, packet_length, &session->startup, message, sizeof(message)) != 0) {
        snprintf(outcome, sizeof(outcome), "rejected: %s", message);
        reject(session, "08P01", message, outcome);
        return;
    }
    if (!authorize_encrypted_user(session))
        return;
    tracker_feed(&session->tracker, packet + packet_length, buffer_used(&session->to_upstream) - packet_length);
    connect_upstream(session);
}

static bool step_reading_startup(struct session *session)
{
    size_t space;
    uint8_t *tail = buffer_tail(&session->to_upstream, &space);
    ssize_t count = pggss_conn_read(session->gss, tail, space);
    if (count == 0) {
        finish(session, "client", "error: client closed the connection before sending its StartupMessage");
        return true;
    }
    if (count < 0) {
        if (would_block(errno)) {
            session->client_events = POLLIN;
            return false;
        }
        finish_gss_failure(session, "reading the encrypted StartupMessage");
        return true;
    }
    session->to_upstream.end += (size_t)count;
    session->bytes_from_client += (uint64_t)count;

    size_t received = buffer_used(&session->to_upstream);
    if (received < 4)
        return true;
    const uint8_t *packet = session->to_upstream.data + session->to_upstream.start;
    uint32_t packet_length = read_be32(packet);
    if (packet_length < 8 || packet_length > MAX_STARTUP_PACKET_SIZE) {
        char message[256];
        char outcome[512];
        snprintf(message, sizeof(message), "invalid startup packet length %u; expected 8 to %d bytes",
                 packet_length, MAX_STARTUP_PACKET_SIZE);
        snprintf(outcome, sizeof(outcome), "rejected: %s", message);
        reject(session, "08P01", message, outcome);
        return true;
    }
    if (received >= packet_length)
        handle_encrypted_startup(session, packet_length);
    return true;
}

/* The outcome of a relay that ended normally: "cancel", "encrypted" or "plaintext". */
static const char *normal_outcome(const struct session *session)
{
    return session->cancel_request ? "cancel" : session->mode;
}

/* Ends a relay whose client closed, once its last bytes reached the upstream server. */
static void finish_client_closed(struct session *session)
{
    if (session->cancel_request || tracker_ended_with_terminate(&session->tracker)) {
        finish(session, "client", "%s", normal_outcome(session));
        return;
    }
    char where[128];
    tracker_describe(&session->tracker, where, sizeof(where));
    finish(session, "client",
           "error: client closed the connection without Terminate, %s; the upstream connection was closed", where);
}

/*
 * One round of the relay: client to upstream, then upstream to client.
 * Returns true when any bytes moved or the state changed.
 */
static bool step_relaying(struct session *session)
{
    bool progress = false;
    size_t space;
    uint8_t *tail;

    /*
     * Read the client while the buffer has room, until EAGAIN. Stopping only
     * at EAGAIN matters because pggssenc may hold complete encrypted
     * packets that pggss_conn_pending does not count, while the socket has
     * nothing more to read.
     */
    if (!session->client_eof && !session->upstream_eof && buffer_space(&session->to_upstream) > 0) {
        tail = buffer_tail(&session->to_upstream, &space);
        ssize_t count = pggss_conn_read(session->gss, tail, space);
        if (count > 0) {
            session->to_upstream.end += (size_t)count;
            session->bytes_from_client += (uint64_t)count;
            tracker_feed(&session->tracker, tail, (size_t)count);
            progress = true;
        } else if (count == 0) {
            session->client_eof = true;
            session->deadline_ms = monotonic_ms() + DRAIN_TIMEOUT_MS;
            progress = true;
        } else if (would_block(errno)) {
            session->client_events |= POLLIN;
        } else {
            finish(session, "client", "error: reading from the client failed: %s; the upstream connection was closed",
                   pggss_conn_error_message(session->gss));
            return true;
        }
    }

    /* After the upstream server closed, its socket takes nothing more. */
    if (!session->upstream_eof && buffer_used(&session->to_upstream) > 0) {
        ssize_t sent = send(session->upstream_fd, session->to_upstream.data + session->to_upstream.start,
                            buffer_used(&session->to_upstream), MSG_NOSIGNAL);
        if (sent > 0) {
            buffer_consume(&session->to_upstream, (size_t)sent);
            progress = true;
        } else if (sent < 0 && would_block(errno)) {
            session->upstream_events |= POLLOUT;
        } else if (sent < 0 && errno != EINTR) {
            finish(session, "upstream", "error: sending to upstream %s failed: %s", session->config->upstream_text,
                   strerror(errno));
            return true;
        }
    }
    if (session->client_eof && buffer_used(&session->to_upstream) == 0) {
        finish_client_closed(session);
        return true;
    }

    if (!session->upstream_eof && !session->client_eof && buffer_space(&session->to_client) > 0) {
        tail = buffer_tail(&session->to_client, &space);
        ssize_t count = recv(session->upstream_fd, tail, space, 0);
        if (count > 0) {
            session->to_client.end += (size_t)count;
            progress = true;
        } else if (count == 0) {
            session->upstream_eof = true;
            session->deadline_ms = monotonic_ms() + DRAIN_TIMEOUT_MS;
            progress = true;
        } else if (would_block(errno)) {
            session->upstream_events |= POLLIN;
        } else if (errno != EINTR) {
            finish(session, "upstream", "error: reading from upstream %s failed: %s", session->config->upstream_text,
                   strerror(errno));
            return true;
        }
    }

    /*
     * After the client closed, nothing is delivered to it: a PostgreSQL
     * client closes only after Terminate, and a failed send must not turn
     * that orderly end into an error.
     */
    if (!session->client_eof) {
        int flushed = flush_to_client(session);
        if (flushed < 0)
            return true;
        progress = progress || flushed > 0;
    }
    if (session->upstream_eof && buffer_used(&session->to_client) == 0) {
        finish(session, "upstream", "%s", normal_outcome(session));
        return true;
    }
    return progress;
}

static bool step_rejecting(struct session *session)
{
    int flushed = flush_to_client(session);
    if (flushed < 0)
        return true;
    if (buffer_used(&session->to_client) > 0)
        return flushed > 0;
    shutdown(session->client_fd, SHUT_WR);
    session->phase = PHASE_LINGERING;
    return true;
}

static bool step_lingering(struct session *session)
{
    uint8_t discard[4096];
    ssize_t count = recv(session->client_fd, discard, sizeof(discard), 0);
    if (count > 0)
        return true;
    if (count < 0 && would_block(errno)) {
        session->client_events = POLLIN;
        return false;
    }
    finish(session, "proxy", "%s", session->pending_outcome);
    return true;
}

/* Runs one step of the current phase. Returns true when it made progress. */
static bool step(struct session *session)
{
    switch (session->phase) {
    case PHASE_NEGOTIATING:
        return step_negotiating(session);
    case PHASE_DECLINING_SSL:
        return step_declining_ssl(session);
    case PHASE_READING_STARTUP:
        return step_reading_startup(session);
    case PHASE_CONNECTING:
        return step_connecting(session);
    case PHASE_RELAYING:
        return step_relaying(session);
    case PHASE_REJECTING:
        return step_rejecting(session);
    case PHASE_LINGERING:
        return step_lingering(session);
    case PHASE_FINISHED:
        break;
    }
    return false;
}

void session_run(struct session *session)
{
    if (session->phase == PHASE_FINISHED)
        return;

    session->ready = false;
    for (int round = 0; round < MAX_PUMP_ROUNDS; round++) {
        session->client_events = 0;
        session->upstream_events = 0;
        if (!step(session))
            break;
        if (session->phase == PHASE_FINISHED)
            return;
        if (round == MAX_PUMP_ROUNDS - 1)
            session->ready = true;
    }
    if (session->phase == PHASE_FINISHED)
        return;

    /*
     * A read returned EAGAIN above, so pggssenc is not expected to hold
     * decrypted bytes here. If it did, polling the socket could wait
     * forever, so the session runs again without waiting.
     */
    if (session->gss != NULL && (session->client_events & POLLIN) && pggss_conn_pending(session->gss) > 0)
        session->ready = true;
}

void session_check_deadline(struct session *session, int64_t now)
{
    if (session->phase == PHASE_FINISHED || session->deadline_ms == 0 || now < session->deadline_ms)
        return;

    double seconds = session->config->handshake_timeout_ms / 1000.0;
    switch (session->phase) {
    case PHASE_NEGOTIATING:
    case PHASE_DECLINING_SSL:
        finish(session, "proxy", "error: handshake timed out after %.1f s: the client did not finish GSSAPI negotiation",
               seconds);
        break;
    case PHASE_READING_STARTUP:
        finish(session, "proxy", "error: handshake timed out after %.1f s: no complete StartupMessage from the client",
               seconds);
        break;
    case PHASE_CONNECTING:
        finish(session, "proxy", "error: connecting to upstream %s timed out after %.1f s",
               session->config->upstream_text, seconds);
        break;
    case PHASE_RELAYING:
        finish(session, "proxy", "error: timed out after %d s flushing the last bytes to the %s",
               DRAIN_TIMEOUT_MS / 1000, session->client_eof ? "upstream server" : "client");
        break;
    case PHASE_REJECTING:
    case PHASE_LINGERING:
        finish(session, "proxy", "%s", session->pending_outcome);
        break;
    case PHASE_FINISHED:
        break;
    }
}

void session_shutdown(struct session *session)
{
    finish(session, "proxy", "error: the proxy is shutting down");
}

bool session_finished(const struct session *session)
{
    return session->phase == PHASE_FINISHED;
}

void session_poll_events(const struct session *session, int *client_fd, short *client_events, int *upstream_fd,
                         short *upstream_events, bool *ready)
{
    *client_fd = session->client_fd;
    *client_events = session->client_events;
    *upstream_fd = session->upstream_fd;
    *upstream_events = session->upstream_events;
    *ready = session->ready;
}

int64_t session_deadline(const struct session *session)
{
    return session->deadline_ms;
}

void session_free(struct session *session)
{
    if (session == NULL)
        return;
    if (session->phase != PHASE_FINISHED)
        session_shutdown(session);
    /* The relay buffers held decrypted client data. */
    explicit_bzero(session, sizeof(*session));
    free(session);
}
