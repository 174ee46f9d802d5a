/*
 * pgfe: see pgfe.h. Backend messages are a type byte and a 4-byte
 * big-endian length that counts itself but not the type byte ("Message
 * Formats" in the PostgreSQL 15 documentation).
 */

#define _GNU_SOURCE

#include "pgfe.h"

#include "benchutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Protocol version 3.0 as sent in the StartupMessage: major << 16 | minor. */
#define PROTOCOL_VERSION_3_0 196608

/* Type byte and length word in front of every message after the startup. */
#define HEADER_SIZE 5

/*
 * Least free space offered to one pggss_conn_read call: one packet's
 * plaintext and more, so that reads never shrink to a few bytes at the end
 * of the receive buffer.
 */
#define MIN_READ_SPACE 32768

void pgfe_params_from_env(pgfe_params *params)
{
    params->hostaddr = require_env("PGHOSTADDR");
    params->host = require_env("PGHOST");
    params->port = (int)parse_count(require_env("PGPORT"), 1, "PGPORT");
    params->user = require_env("PGUSER");
    params->database = require_env("PGDATABASE");
}

void pgfe_buffer_init(pgfe_buffer *buffer, size_t capacity)
{
    buffer->data = malloc(capacity);
    if (!buffer->data)
        die("out of memory allocating a %zu-byte buffer", capacity);
    buffer->start = 0;
    buffer->end = 0;
    buffer->capacity = capacity;
}

void pgfe_buffer_free(pgfe_buffer *buffer)
{
    free(buffer->data);
    buffer->data = NULL;
    buffer->capacity = 0;
    buffer->start = 0;
    buffer->end = 0;
}

/* Makes room for `extra` more bytes after buffer->end, moving and growing. */
static void buffer_reserve(pgfe_buffer *buffer, size_t extra)
{
    size_t used = buffer->end - buffer->start;
    if (buffer->start > 0 && buffer->end + extra > buffer->capacity) {
        memmove(buffer->data, buffer->data + buffer->start, used);
        buffer->start = 0;
        buffer->end = used;
    }
    if (buffer->end + extra > buffer->capacity) {
        size_t capacity = buffer->capacity * 2;
        while (capacity < buffer->end + extra)
            capacity *= 2;
        uint8_t *data = realloc(buffer->data, capacity);
        if (!data)
            die("out of memory growing a buffer to %zu bytes", capacity);
        buffer->data = data;
        buffer->capacity = capacity;
    }
}

static void put_u32(uint8_t *at, uint32_t value)
{
    at[0] = (uint8_t)(value >> 24);
    at[1] = (uint8_t)(value >> 16);
    at[2] = (uint8_t)(value >> 8);
    at[3] = (uint8_t)value;
}

static uint32_t get_u32(const uint8_t *at)
{
    return (uint32_t)at[0] << 24 | (uint32_t)at[1] << 16 | (uint32_t)at[2] << 8 | (uint32_t)at[3];
}

static void append(pgfe_buffer *buffer, const void *data, size_t length)
{
    buffer_reserve(buffer, length);
    memcpy(buffer->data + buffer->end, data, length);
    buffer->end += length;
}

static void append_string(pgfe_buffer *buffer, const char *text)
{
    append(buffer, text, strlen(text) + 1);
}

/*
 * Starts a message of type `type` (0 for the StartupMessage, which has
 * none). Returns where its length word is, counted from buffer->start,
 * because appending may move the unsent bytes to the front of the buffer.
 */
static size_t message_begin(pgfe_buffer *buffer, char type)
{
    if (type)
        append(buffer, &type, 1);
    size_t length_at = buffer->end - buffer->start;
    uint8_t placeholder[4] = {0};
    append(buffer, placeholder, 4);
    return length_at;
}

static void message_end(pgfe_buffer *buffer, size_t length_at)
{
    size_t at = buffer->start + length_at;
    put_u32(buffer->data + at, (uint32_t)(buffer->end - at));
}

static void die_gss(const pgfe_conn *conn, const char *call, int saved_errno)
{
    char result_text[128];
    pggss_result result = pggss_conn_last_result(conn->gss);
    pggss_result_text(result, result_text, sizeof result_text);
    die("%s failed with errno %d (%s): %s (pggss_result %u: %s)", call, saved_errno, strerror(saved_errno),
        pggss_conn_error_message(conn->gss), (unsigned)result, result_text);
}

/* Writes out->data[out->start, out->start + length) through pggssenc. */
static void send_bytes(pgfe_conn *conn, size_t length)
{
    pgfe_buffer *out = conn->out;
    while (length > 0) {
        ssize_t written = pggss_conn_write(conn->gss, out->data + out->start, length);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            die_gss(conn, "pggss_conn_write", errno);
        }
        out->start += (size_t)written;
        length -= (size_t)written;
    }
    if (out->start == out->end) {
        out->start = 0;
        out->end = 0;
    }
}

static void flush_all(pgfe_conn *conn)
{
    send_bytes(conn, conn->out->end - conn->out->start);
}

/* Reads at least `needed` unparsed bytes into conn->in. */
static void fill(pgfe_conn *conn, size_t needed)
{
    pgfe_buffer *in = conn->in;
    while (in->end - in->start < needed) {
        size_t missing = needed - (in->end - in->start);
        buffer_reserve(in, missing > MIN_READ_SPACE ? missing : MIN_READ_SPACE);
        ssize_t received = pggss_conn_read(conn->gss, in->data + in->end, in->capacity - in->end);
        if (received < 0) {
            if (errno == EINTR)
                continue;
            die_gss(conn, "pggss_conn_read", errno);
        }
        if (received == 0)
            die("the server closed the connection unexpectedly");
        in->end += (size_t)received;
    }
}

/*
 * Reads the next backend message. `*payload` points into conn->in and stays
 * valid until the next call.
 */
static char next_message(pgfe_conn *conn, const uint8_t **payload, size_t *length)
{
    fill(conn, HEADER_SIZE);
    pgfe_buffer *in = conn->in;
    const uint8_t *header = in->data + in->start;
    char type = (char)header[0];
    uint32_t declared = get_u32(header + 1);
    if (declared < 4)
        die("invalid length %u in a message of type '%c'", declared, type);
    fill(conn, HEADER_SIZE + declared - 4);
    *payload = in->data + in->start + HEADER_SIZE;
    *length = declared - 4;
    in->start += HEADER_SIZE + declared - 4;
    if (in->start == in->end) {
        in->start = 0;
        in->end = 0;
    }
    return type;
}

/* Exits with the text of an ErrorResponse: its severity and message fields. */
static void die_server_error(const uint8_t *payload, size_t length, const char *during) __attribute__((noreturn));

static void die_server_error(const uint8_t *payload, size_t length, const char *during)
{
    const char *severity = "ERROR";
    const char *message = "(no message)";
    size_t at = 0;
    while (at < length && payload[at] != 0) {
        char field = (char)payload[at++];
        const char *value = (const char *)payload + at;
        size_t value_length = strnlen(value, length - at);
        if (field == 'S')
            severity = value;
        else if (field == 'M')
            message = value;
        at += value_length + 1;
    }
    die("server sent %s during %s: %s", severity, during, message);
}

/* Returns the number at the end of a CommandComplete tag, such as "COPY 42". */
static uint64_t tag_count(const uint8_t *payload, size_t length)
{
    const char *tag = (const char *)payload;
    const char *space = memrchr(tag, ' ', strnlen(tag, length));
    return space ? strtoull(space + 1, NULL, 10) : 0;
}

static void connect_socket(pgfe_conn *conn, const pgfe_params *params)
{
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)params->port);
    if (inet_pton(AF_INET, params->hostaddr, &address.sin_addr) != 1)
        die("invalid IPv4 address \"%s\"", params->hostaddr);

    conn->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn->fd < 0)
        die("socket failed: %s", strerror(errno));
    int on = 1;
    if (setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0)
        die("setsockopt(TCP_NODELAY) failed: %s", strerror(errno));
    if (connect(conn->fd, (struct sockaddr *)&address, sizeof address) != 0)
        die("connect to %s:%d failed: %s", params->hostaddr, params->port, strerror(errno));
}

static void negotiate(pgfe_conn *conn, const pgfe_params *params)
{
    if (pggss_conn_new(&conn->gss) != PGGSS_RESULT_OK)
        die("pggss_conn_new failed");
    if (pggss_conn_set_param(conn->gss, "host", params->host) != PGGSS_RESULT_OK ||
        pggss_conn_set_param(conn->gss, "gssencmode", "require") != PGGSS_RESULT_OK)
        die("pggss_conn_set_param failed: %s", pggss_conn_error_message(conn->gss));
    if (pggss_conn_set_fd(conn->gss, conn->fd) != PGGSS_RESULT_OK)
        die("pggss_conn_set_fd failed: %s", pggss_conn_error_message(conn->gss));

    /* On a blocking socket the first call finishes; the bound catches a loop. */
    int status = PGGSS_POLLING_STATUS_READING;
    for (int round = 0; round < 100 && status != PGGSS_POLLING_STATUS_OK; round++) {
        status = pggss_conn_connect_poll(conn->gss);
        if (status == PGGSS_POLLING_STATUS_FAILED)
            die("GSSAPI negotiation failed: %s", pggss_conn_error_message(conn->gss));
    }
    if (status != PGGSS_POLLING_STATUS_OK)
        die("GSSAPI negotiation did not finish within 100 calls of pggss_conn_connect_poll");
    if (pggss_conn_outcome(conn->gss) != PGGSS_OUTCOME_ENCRYPTED)
        die("GSSAPI negotiation ended with outcome %d instead of ENCRYPTED", (int)pggss_conn_outcome(conn->gss));
}

static void startup(pgfe_conn *conn, const pgfe_params *params)
{
    size_t length_at = message_begin(conn->out, 0);
    uint8_t version[4];
    put_u32(version, PROTOCOL_VERSION_3_0);
    append(conn->out, version, 4);
    append_string(conn->out, "user");
    append_string(conn->out, params->user);
    append_string(conn->out, "database");
    append_string(conn->out, params->database);
    append(conn->out, "", 1);
    message_end(conn->out, length_at);
    flush_all(conn);

    for (;;) {
        const uint8_t *payload;
        size_t length;
        char type = next_message(conn, &payload, &length);
        switch (type) {
        case 'R':
            if (length < 4 || get_u32(payload) != 0)
                die("the server requested authentication method %u; only AuthenticationOk is supported",
                    length >= 4 ? get_u32(payload) : 0);
            break;
        case 'E':
            die_server_error(payload, length, "startup");
        case 'Z':
            return;
        default:
            /* ParameterStatus, BackendKeyData and NoticeResponse. */
            break;
        }
    }
}

void pgfe_connect(pgfe_conn *conn, const pgfe_params *params, pgfe_buffer *in, pgfe_buffer *out)
{
    conn->in = in;
    conn->out = out;
    connect_socket(conn, params);
    negotiate(conn, params);
    startup(conn, params);
}

static void send_query(pgfe_conn *conn, const char *sql)
{
    size_t length_at = message_begin(conn->out, 'Q');
    append_string(conn->out, sql);
    message_end(conn->out, length_at);
    flush_all(conn);
}

uint64_t pgfe_query(pgfe_conn *conn, const char *sql, char *first_value, size_t size)
{
    uint64_t rows = 0;
    send_query(conn, sql);
    for (;;) {
        const uint8_t *payload;
        size_t length;
        char type = next_message(conn, &payload, &length);
        switch (type) {
        case 'D':
            if (rows == 0 && first_value && size > 0 && length >= 6) {
                int32_t value_length = (int32_t)get_u32(payload + 2);
                size_t copy = value_length < 0 ? 0 : (size_t)value_length;
                if (copy > length - 6)
                    die("invalid DataRow: a value of %zu bytes in a message of %zu", copy, length);
                if (copy > size - 1)
                    copy = size - 1;
                memcpy(first_value, payload + 6, copy);
                first_value[copy] = '\0';
            }
            rows++;
            break;
        case 'E':
            die_server_error(payload, length, sql);
        case 'Z':
            return rows;
        default:
            /* RowDescription, CommandComplete, EmptyQueryResponse, notices. */
            break;
        }
    }
}

uint64_t pgfe_copy_out(pgfe_conn *conn, const char *sql, uint64_t *rows)
{
    uint64_t bytes = 0;
    int started = 0;
    *rows = 0;
    send_query(conn, sql);
    for (;;) {
        const uint8_t *payload;
        size_t length;
        char type = next_message(conn, &payload, &length);
        switch (type) {
        case 'd':
            bytes += length;
            break;
        case 'H':
            started = 1;
            break;
        case 'C':
            *rows = tag_count(payload, length);
            break;
        case 'E':
            die_server_error(payload, length, sql);
        case 'Z':
            if (!started)
                die("the server sent no CopyOutResponse for: %s", sql);
            return bytes;
        default:
            /* CopyDone and notices. */
            break;
        }
    }
}

uint64_t pgfe_copy_in(pgfe_conn *conn, const char *sql, const uint8_t *data, size_t length, size_t chunk)
{
    send_query(conn, sql);
    for (;;) {
        const uint8_t *payload;
        size_t message_length;
        char type = next_message(conn, &payload, &message_length);
        if (type == 'G')
            break;
        if (type == 'E')
            die_server_error(payload, message_length, sql);
        if (type == 'Z')
            die("the server sent no CopyInResponse for: %s", sql);
    }

    /*
     * Only whole packets leave while data streams, because a write that is
     * not a multiple of the packet's plaintext size ends in a short packet.
     * libpq does the like: pqPutMsgEnd (fe-misc.c) sends whole multiples of
     * 8192 bytes from its output buffer and keeps the rest.
     */
    size_t packet = pggss_conn_max_plaintext(conn->gss);
    if (packet == 0)
        die("pggss_conn_max_plaintext returned 0 on an encrypted connection");
    for (size_t offset = 0; offset < length; offset += chunk) {
        size_t piece = length - offset < chunk ? length - offset : chunk;
        size_t length_at = message_begin(conn->out, 'd');
        append(conn->out, data + offset, piece);
        message_end(conn->out, length_at);
        size_t queued = conn->out->end - conn->out->start;
        send_bytes(conn, queued - queued % packet);
    }
    size_t length_at = message_begin(conn->out, 'c');
    message_end(conn->out, length_at);
    flush_all(conn);

    uint64_t rows = 0;
    for (;;) {
        const uint8_t *payload;
        size_t message_length;
        char type = next_message(conn, &payload, &message_length);
        if (type == 'C')
            rows = tag_count(payload, message_length);
        else if (type == 'E')
            die_server_error(payload, message_length, sql);
        else if (type == 'Z')
            return rows;
    }
}

void pgfe_finish(pgfe_conn *conn)
{
    size_t length_at = message_begin(conn->out, 'X');
    message_end(conn->out, length_at);
    flush_all(conn);
    pggss_conn_free(conn->gss);
    conn->gss = NULL;
    close(conn->fd);
    conn->fd = -1;
}
