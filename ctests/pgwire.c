/*
 * pgwire: PostgreSQL frontend/backend protocol 3.0 over pggssenc. See
 * pgwire.h for the interface. The message formats follow the "Message
 * Formats" chapter of the PostgreSQL documentation: every backend message
 * is a type byte and a 4-byte big-endian length that counts itself but not
 * the type byte.
 */

#define _POSIX_C_SOURCE 200809L

#include "pgwire.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Protocol version 3.0 as sent in the StartupMessage: major << 16 | minor. */
#define PROTOCOL_VERSION_3_0 196608

/*
 * Largest backend message accepted. A field value may reach 1 GB in
 * PostgreSQL, and a DataRow adds its framing to that.
 */
#define MAX_MESSAGE_LENGTH ((size_t)1 << 30 | (size_t)1 << 20)

/* COPY data chunks larger than this skip the send buffer. */
#define DIRECT_WRITE_THRESHOLD 65536

#define INITIAL_BUFFER_SIZE 65536

/* ---- errors ---- */

static void set_error(pgw_conn *w, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void set_error(pgw_conn *w, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(w->error, sizeof w->error, format, args);
    va_end(args);
}

/* Records a connection failure and returns PGW_FAILED. */
static pgw_status fail(pgw_conn *w, const char *format, ...) __attribute__((format(printf, 2, 3)));

static pgw_status fail(pgw_conn *w, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(w->error, sizeof w->error, format, args);
    va_end(args);
    w->broken = 1;
    return PGW_FAILED;
}

void pgw_describe_gss_failure(const pggss_conn *gss, char *buffer, size_t size)
{
    char result_text[128];
    pggss_result result = pggss_conn_last_result(gss);
    pggss_result_text(result, result_text, sizeof result_text);
    snprintf(buffer, size, "%s (pggss_result %u: %s)", pggss_conn_error_message(gss), (unsigned)result, result_text);
}

static pgw_status fail_gss(pgw_conn *w, const char *call, int saved_errno)
{
    char description[1536];
    pgw_describe_gss_failure(w->gss, description, sizeof description);
    return fail(w, "%s failed with errno %d (%s): %s", call, saved_errno, strerror(saved_errno), description);
}

/* ---- transport ---- */

/* Waits until the socket reports one of `events`, or fails on timeout. */
static pgw_status wait_socket(pgw_conn *w, short events)
{
    const char *what = (events & POLLIN) ? "readable" : "writable";

    if (w->fd < 0) {
        return fail(w, "the transport would block, and there is no socket to wait on until it is %s", what);
    }

    for (;;) {
        struct pollfd pfd = {.fd = w->fd, .events = events, .revents = 0};
        w->stats.polls++;
        int ready = poll(&pfd, 1, w->timeout_ms);
        if (ready > 0) {
            /* POLLERR and POLLHUP are left to the next read or write, which reports the cause. */
            return PGW_OK;
        }
        if (ready == 0) {
            return fail(w,
                        "timed out after %d ms waiting for the socket to become %s "
                        "(pggss_conn_pending %zu, pggss_conn_wanted %zu)",
                        w->timeout_ms, what, pggss_conn_pending(w->gss), pggss_conn_wanted(w->gss));
        }
        if (errno != EINTR) {
            return fail(w, "poll failed: %s", strerror(errno));
        }
    }
}

/* Writes all `length` bytes, following the retry rule of pggss_conn_write. */
static pgw_status write_all(pgw_conn *w, const uint8_t *data, size_t length)
{
    size_t done = 0;

    while (done < length) {
        /*
         * After EAGAIN the same start and the same count are offered again,
         * as pggss_conn_write requires.
         */
        size_t offer = length - done;
        if (offer > w->write_chunk) {
            offer = w->write_chunk;
        }

        ssize_t written = pggss_conn_write(w->gss, data + done, offer);
        if (written > 0) {
            if ((size_t)written > offer) {
                return fail(w, "pggss_conn_write reported %zd bytes written of %zu offered", written, offer);
            }
            w->stats.writes++;
            w->stats.bytes_written += (uint64_t)written;
            done += (size_t)written;
            continue;
        }
        if (written == 0) {
            return fail(w, "pggss_conn_write returned 0 for %zu bytes", offer);
        }

        int saved_errno = errno;
        if (saved_errno == EINTR) {
            continue;
        }
        if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK) {
            w->stats.write_would_block++;
            if (wait_socket(w, POLLOUT) != PGW_OK) {
                return PGW_FAILED;
            }
            continue;
        }
        return fail_gss(w, "pggss_conn_write", saved_errno);
    }
    return PGW_OK;
}

static pgw_status flush_output(pgw_conn *w)
{
    if (w->out_length == 0) {
        return PGW_OK;
    }
    pgw_status status = write_all(w, w->out, w->out_length);
    w->out_length = 0;
    return status;
}

/* Makes room in the input buffer for `need` unparsed bytes in total. */
static pgw_status reserve_input(pgw_conn *w, size_t need)
{
    size_t available = w->in_end - w->in_start;

    if (available == 0) {
        w->in_start = 0;
        w->in_end = 0;
    }
    if (w->in_end < w->in_capacity && w->in_capacity - w->in_start >= need) {
        return PGW_OK;
    }

    memmove(w->in, w->in + w->in_start, available);
    w->in_start = 0;
    w->in_end = available;
    if (w->in_capacity < need) {
        size_t capacity = w->in_capacity * 2;
        if (capacity < need) {
            capacity = need;
        }
        uint8_t *grown = realloc(w->in, capacity);
        if (grown == NULL) {
            return fail(w, "out of memory for a %zu-byte receive buffer", capacity);
        }
        w->in = grown;
        w->in_capacity = capacity;
    }
    return PGW_OK;
}

/* Reads until at least `need` unparsed bytes are buffered. */
static pgw_status fill_input(pgw_conn *w, size_t need)
{
    while (w->in_end - w->in_start < need) {
        if (reserve_input(w, need) != PGW_OK) {
            return PGW_FAILED;
        }

        if (pggss_conn_pending(w->gss) > 0) {
            w->stats.pending_reads++;
        } else if (w->poll_before_read) {
            if (wait_socket(w, POLLIN) != PGW_OK) {
                return PGW_FAILED;
            }
        }

        size_t room = w->in_capacity - w->in_end;
        if (room > w->read_chunk) {
            room = w->read_chunk;
        }
        ssize_t received = pggss_conn_read(w->gss, w->in + w->in_end, room);
        if (received > 0) {
            if ((size_t)received > room) {
                return fail(w, "pggss_conn_read reported %zd bytes for a %zu-byte buffer", received, room);
            }
            w->stats.reads++;
            w->stats.bytes_read += (uint64_t)received;
            w->in_end += (size_t)received;
            continue;
        }
        if (received == 0) {
            return fail(w, "the server closed the connection");
        }

        int saved_errno = errno;
        if (saved_errno == EINTR) {
            continue;
        }
        if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK) {
            w->stats.read_would_block++;
            if (pggss_conn_pending(w->gss) > 0) {
                continue;
            }
            if (wait_socket(w, POLLIN) != PGW_OK) {
                return PGW_FAILED;
            }
            continue;
        }
        return fail_gss(w, "pggss_conn_read", saved_errno);
    }
    return PGW_OK;
}

static uint32_t read_uint32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/*
 * Receives one backend message. `body` points into the input buffer and is
 * valid until the next receive.
 */
static pgw_status receive_message(pgw_conn *w, char *type, const uint8_t **body, size_t *body_length)
{
    if (fill_input(w, 5) != PGW_OK) {
        return PGW_FAILED;
    }
    const uint8_t *header = w->in + w->in_start;
    uint32_t length = read_uint32(header + 1);
    if (length < 4 || length > MAX_MESSAGE_LENGTH) {
        return fail(w, "invalid length %u in a backend message of type 0x%02x", length, header[0]);
    }
    if (fill_input(w, 1 + (size_t)length) != PGW_OK) {
        return PGW_FAILED;
    }

    *type = (char)w->in[w->in_start];
    *body = w->in + w->in_start + 5;
    *body_length = length - 4;
    w->in_start += 1 + (size_t)length;
    return PGW_OK;
}

/* ---- message building ---- */

static pgw_status reserve_output(pgw_conn *w, size_t extra)
{
    if (w->out_capacity - w->out_length >= extra) {
        return PGW_OK;
    }
    size_t capacity = w->out_capacity * 2;
    if (capacity < w->out_length + extra) {
        capacity = w->out_length + extra;
    }
    uint8_t *grown = realloc(w->out, capacity);
    if (grown == NULL) {
        return fail(w, "out of memory for a %zu-byte send buffer", capacity);
    }
    w->out = grown;
    w->out_capacity = capacity;
    return PGW_OK;
}

static pgw_status put_bytes(pgw_conn *w, const void *data, size_t length)
{
    if (reserve_output(w, length) != PGW_OK) {
        return PGW_FAILED;
    }
    memcpy(w->out + w->out_length, data, length);
    w->out_length += length;
    return PGW_OK;
}

static pgw_status put_uint32(pgw_conn *w, uint32_t value)
{
    uint8_t bytes[4] = {(uint8_t)(value >> 24), (uint8_t)(value >> 16), (uint8_t)(value >> 8), (uint8_t)value};
    return put_bytes(w, bytes, sizeof bytes);
}

static pgw_status put_string(pgw_conn *w, const char *text)
{
    return put_bytes(w, text, strlen(text) + 1);
}

/*
 * Starts a message of `type` (0 for the StartupMessage, which has no type
 * byte) and stores in `*length_at` where its length word goes.
 */
static pgw_status begin_message(pgw_conn *w, char type, size_t *length_at)
{
    if (type != 0 && put_bytes(w, &type, 1) != PGW_OK) {
        return PGW_FAILED;
    }
    *length_at = w->out_length;
    return put_uint32(w, 0);
}

/* Fills in the length word of the message that begins at `length_at`. */
static pgw_status end_message(pgw_conn *w, size_t length_at, size_t extra_length)
{
    size_t length = w->out_length - length_at + extra_length;
    if (length > UINT32_MAX >> 1) {
        return fail(w, "message of %zu bytes is too long for the protocol", length);
    }
    uint8_t *p = w->out + length_at;
    p[0] = (uint8_t)(length >> 24);
    p[1] = (uint8_t)(length >> 16);
    p[2] = (uint8_t)(length >> 8);
    p[3] = (uint8_t)length;
    return PGW_OK;
}

/* ---- message parsing ---- */

typedef struct {
    const uint8_t *data;
    size_t length;
    size_t position;
    int malformed;
} parser;

static uint32_t parse_uint32(parser *p)
{
    if (p->length - p->position < 4) {
        p->malformed = 1;
        return 0;
    }
    uint32_t value = read_uint32(p->data + p->position);
    p->position += 4;
    return value;
}

static uint16_t parse_uint16(parser *p)
{
    if (p->length - p->position < 2) {
        p->malformed = 1;
        return 0;
    }
    uint16_t value = (uint16_t)(p->data[p->position] << 8 | p->data[p->position + 1]);
    p->position += 2;
    return value;
}

static uint8_t parse_byte(parser *p)
{
    if (p->length - p->position < 1) {
        p->malformed = 1;
        return 0;
    }
    return p->data[p->position++];
}

/* Returns a NUL-terminated string inside the message, or "" when malformed. */
static const char *parse_string(parser *p)
{
    const uint8_t *start = p->data + p->position;
    const uint8_t *nul = memchr(start, 0, p->length - p->position);
    if (nul == NULL) {
        p->malformed = 1;
        return "";
    }
    p->position += (size_t)(nul - start) + 1;
    return (const char *)start;
}

static void copy_text(char *target, size_t size, const char *text)
{
    snprintf(target, size, "%s", text);
}

/*
 * Stores an ErrorResponse as "SEVERITY SQLSTATE: message" with its detail
 * and hint, and its SQLSTATE in w->sqlstate.
 */
static pgw_status record_error_response(pgw_conn *w, const uint8_t *body, size_t length)
{
    parser p = {body, length, 0, 0};
    const char *severity = "";
    const char *code = "";
    const char *message = "";
    const char *detail = NULL;
    const char *hint = NULL;

    for (;;) {
        uint8_t field = parse_byte(&p);
        if (field == 0 || p.malformed) {
            break;
        }
        const char *value = parse_string(&p);
        switch (field) {
        case 'V':
            severity = value;
            break;
        case 'S':
            if (severity[0] == '\0') {
                severity = value;
            }
            break;
        case 'C':
            code = value;
            break;
        case 'M':
            message = value;
            break;
        case 'D':
            detail = value;
            break;
        case 'H':
            hint = value;
            break;
        default:
            break;
        }
    }
    if (p.malformed) {
        return fail(w, "malformed ErrorResponse message");
    }

    copy_text(w->sqlstate, sizeof w->sqlstate, code);
    int used = snprintf(w->error, sizeof w->error, "%s %s: %s", severity, code, message);
    if (detail != NULL && used >= 0 && (size_t)used < sizeof w->error) {
        used += snprintf(w->error + used, sizeof w->error - (size_t)used, " DETAIL: %s", detail);
    }
    if (hint != NULL && used >= 0 && (size_t)used < sizeof w->error) {
        snprintf(w->error + used, sizeof w->error - (size_t)used, " HINT: %s", hint);
    }
    return PGW_OK;
}

/* Handles the messages that may arrive at any time: ParameterStatus, notices, notifications. */
static pgw_status handle_asynchronous(pgw_conn *w, char type, const uint8_t *body, size_t length, int *handled)
{
    *handled = 1;
    switch (type) {
    case 'S': {
        parser p = {body, length, 0, 0};
        const char *name = parse_string(&p);
        const char *value = parse_string(&p);
        if (p.malformed) {
            return fail(w, "malformed ParameterStatus message");
        }
        if (strcmp(name, "server_version") == 0) {
            copy_text(w->server_version, sizeof w->server_version, value);
        }
        return PGW_OK;
    }
    case 'N':
    case 'A':
        /* NoticeResponse and NotificationResponse carry nothing the callers need. */
        return PGW_OK;
    default:
        *handled = 0;
        return PGW_OK;
    }
}

/* ---- public calls ---- */

int pgw_init(pgw_conn *w, pggss_conn *gss, int fd)
{
    memset(w, 0, sizeof *w);
    w->gss = gss;
    w->fd = fd;
    w->timeout_ms = PGW_DEFAULT_TIMEOUT_MS;
    w->read_chunk = SIZE_MAX;
    w->write_chunk = SIZE_MAX;
    w->backend_pid = -1;
    w->in = malloc(INITIAL_BUFFER_SIZE);
    w->out = malloc(INITIAL_BUFFER_SIZE);
    if (w->in == NULL || w->out == NULL) {
        free(w->in);
        free(w->out);
        w->in = NULL;
        w->out = NULL;
        return -1;
    }
    w->in_capacity = INITIAL_BUFFER_SIZE;
    w->out_capacity = INITIAL_BUFFER_SIZE;
    return 0;
}

void pgw_destroy(pgw_conn *w)
{
    free(w->in);
    free(w->out);
    w->in = NULL;
    w->out = NULL;
    w->in_capacity = 0;
    w->out_capacity = 0;
}

pgw_status pgw_negotiate(pgw_conn *w, unsigned *polls_out)
{
    unsigned polls = 0;

    for (;;) {
        int polling = pggss_conn_connect_poll(w->gss);
        polls++;
        if (polls_out != NULL) {
            *polls_out = polls;
        }

        switch (polling) {
        case PGGSS_POLLING_STATUS_OK:
            return PGW_OK;
        case PGGSS_POLLING_STATUS_READING:
            if (wait_socket(w, POLLIN) != PGW_OK) {
                return PGW_FAILED;
            }
            break;
        case PGGSS_POLLING_STATUS_WRITING:
            if (wait_socket(w, POLLOUT) != PGW_OK) {
                return PGW_FAILED;
            }
            break;
        case PGGSS_POLLING_STATUS_FAILED: {
            char description[1536];
            pgw_describe_gss_failure(w->gss, description, sizeof description);
            return fail(w, "GSSAPI negotiation failed: %s", description);
        }
        default:
            return fail(w, "pggss_conn_connect_poll returned unknown status %d", polling);
        }
    }
}

pgw_status pgw_startup(pgw_conn *w, const char *user, const char *database, const char *application_name)
{
    size_t length_at;

    if (w->broken) {
        return PGW_FAILED;
    }
    if (begin_message(w, 0, &length_at) != PGW_OK || put_uint32(w, PROTOCOL_VERSION_3_0) != PGW_OK
        || put_string(w, "user") != PGW_OK || put_string(w, user) != PGW_OK || put_string(w, "database") != PGW_OK
        || put_string(w, database) != PGW_OK) {
        return PGW_FAILED;
    }
    if (application_name != NULL
        && (put_string(w, "application_name") != PGW_OK || put_string(w, application_name) != PGW_OK)) {
        return PGW_FAILED;
    }
    if (put_bytes(w, "", 1) != PGW_OK || end_message(w, length_at, 0) != PGW_OK || flush_output(w) != PGW_OK) {
        return PGW_FAILED;
    }

    for (;;) {
        char type;
        const uint8_t *body;
        size_t length;
        int handled;

        if (receive_message(w, &type, &body, &length) != PGW_OK) {
            return PGW_FAILED;
        }
        if (handle_asynchronous(w, type, body, length, &handled) != PGW_OK) {
            return PGW_FAILED;
        }
        if (handled) {
            continue;
        }

        parser p = {body, length, 0, 0};
        switch (type) {
        case 'R': {
            uint32_t code = parse_uint32(&p);
            if (p.malformed) {
                return fail(w, "malformed Authentication message");
            }
            if (code != 0) {
                return fail(w, "the server requested authentication method %u, but pgwire supports only "
                               "AuthenticationOk (0)", code);
            }
            break;
        }
        case 'K':
            w->backend_pid = (int32_t)parse_uint32(&p);
            w->secret_key = (int32_t)parse_uint32(&p);
            if (p.malformed) {
                return fail(w, "malformed BackendKeyData message");
            }
            break;
        case 'v':
            /* NegotiateProtocolVersion: the server keeps protocol 3.0 and ignores unknown options. */
            break;
        case 'E': {
            if (record_error_response(w, body, length) != PGW_OK) {
                return PGW_FAILED;
            }
            /* Startup errors are FATAL: the server closes the connection. */
            w->broken = 1;
            return PGW_FAILED;
        }
        case 'Z':
            w->transaction_status = (char)parse_byte(&p);
            return PGW_OK;
        default:
            return fail(w, "unexpected message type '%c' during startup", type);
        }
    }
}

/* Sends one CopyData message: small ones through the send buffer, large ones directly. */
static pgw_status send_copy_data(pgw_conn *w, const uint8_t *data, size_t length)
{
    size_t length_at;

    if (begin_message(w, 'd', &length_at) != PGW_OK) {
        return PGW_FAILED;
    }
    if (length > DIRECT_WRITE_THRESHOLD) {
        if (end_message(w, length_at, length) != PGW_OK || flush_output(w) != PGW_OK) {
            return PGW_FAILED;
        }
        return write_all(w, data, length);
    }
    if (put_bytes(w, data, length) != PGW_OK || end_message(w, length_at, 0) != PGW_OK) {
        return PGW_FAILED;
    }
    if (w->out_length >= DIRECT_WRITE_THRESHOLD) {
        return flush_output(w);
    }
    return PGW_OK;
}

static pgw_status send_copy_fail(pgw_conn *w, const char *reason)
{
    size_t length_at;
    if (begin_message(w, 'f', &length_at) != PGW_OK || put_string(w, reason) != PGW_OK
        || end_message(w, length_at, 0) != PGW_OK) {
        return PGW_FAILED;
    }
    return flush_output(w);
}

/* Streams the caller's data after CopyInResponse, ending with CopyDone or CopyFail. */
static pgw_status stream_copy_in(pgw_conn *w, pgw_copy_source source, void *userdata, int *aborted)
{
    if (source == NULL) {
        *aborted = 1;
        set_error(w, "the statement started COPY FROM STDIN, but no data source was given");
        return send_copy_fail(w, "the client has no data for COPY FROM STDIN");
    }

    for (;;) {
        const uint8_t *data = NULL;
        size_t length = 0;
        int more = source(userdata, &data, &length);
        if (more < 0) {
            *aborted = 1;
            set_error(w, "the COPY data source reported an error");
            return send_copy_fail(w, "the client's COPY data source reported an error");
        }
        if (more == 0) {
            break;
        }
        if (send_copy_data(w, data, length) != PGW_OK) {
            return PGW_FAILED;
        }
    }

    size_t length_at;
    if (begin_message(w, 'c', &length_at) != PGW_OK || end_message(w, length_at, 0) != PGW_OK) {
        return PGW_FAILED;
    }
    return flush_output(w);
}

typedef struct {
    const pgw_query_handlers *handlers;
    pgw_copy_sink sink;
    void *sink_userdata;
    pgw_copy_source source;
    void *source_userdata;
} exchange;

typedef struct {
    char **names;
    int count;
    const char **values;
    size_t *lengths;
    char *row_text;
    size_t row_text_capacity;
} row_buffers;

static void free_names(row_buffers *rows)
{
    for (int i = 0; i < rows->count; i++) {
        free(rows->names[i]);
    }
    free(rows->names);
    free(rows->values);
    free(rows->lengths);
    rows->names = NULL;
    rows->values = NULL;
    rows->lengths = NULL;
    rows->count = 0;
}

static pgw_status parse_row_description(pgw_conn *w, const uint8_t *body, size_t length, row_buffers *rows)
{
    parser p = {body, length, 0, 0};
    int count = parse_uint16(&p);

    if (p.malformed) {
        return fail(w, "malformed RowDescription message");
    }
    free_names(rows);
    rows->names = calloc((size_t)count + 1, sizeof *rows->names);
    rows->values = calloc((size_t)count + 1, sizeof *rows->values);
    rows->lengths = calloc((size_t)count + 1, sizeof *rows->lengths);
    if (rows->names == NULL || rows->values == NULL || rows->lengths == NULL) {
        return fail(w, "out of memory for %d column names", count);
    }
    for (int i = 0; i < count; i++) {
        const char *name = parse_string(&p);
        /* Table OID, column number, type OID, type size, type modifier and format code. */
        p.position += 18;
        if (p.malformed || p.position > p.length) {
            rows->count = i;
            return fail(w, "malformed RowDescription message");
        }
        rows->names[i] = strdup(name);
        rows->count = i + 1;
        if (rows->names[i] == NULL) {
            return fail(w, "out of memory for column names");
        }
    }
    return PGW_OK;
}

/* Splits a DataRow into NUL-terminated values in rows->row_text. */
static pgw_status parse_data_row(pgw_conn *w, const uint8_t *body, size_t length, row_buffers *rows, int *count_out)
{
    parser p = {body, length, 0, 0};
    int count = parse_uint16(&p);

    if (p.malformed) {
        return fail(w, "malformed DataRow message");
    }
    if (count != rows->count) {
        return fail(w, "DataRow has %d columns, but RowDescription announced %d", count, rows->count);
    }
    /* The values and one NUL each fit in the message length plus the column count. */
    size_t needed = length + (size_t)count + 1;
    if (rows->row_text_capacity < needed) {
        char *grown = realloc(rows->row_text, needed);
        if (grown == NULL) {
            return fail(w, "out of memory for a %zu-byte row", needed);
        }
        rows->row_text = grown;
        rows->row_text_capacity = needed;
    }

    size_t used = 0;
    for (int i = 0; i < count; i++) {
        uint32_t value_length = parse_uint32(&p);
        if (p.malformed) {
            return fail(w, "malformed DataRow message");
        }
        if (value_length == UINT32_MAX) {
            rows->values[i] = NULL;
            rows->lengths[i] = 0;
            continue;
        }
        if (value_length > p.length - p.position) {
            return fail(w, "malformed DataRow message: value of %u bytes overruns the message", value_length);
        }
        char *value = rows->row_text + used;
        memcpy(value, p.data + p.position, value_length);
        value[value_length] = '\0';
        p.position += value_length;
        used += value_length + 1;
        rows->values[i] = value;
        rows->lengths[i] = value_length;
    }
    *count_out = count;
    return PGW_OK;
}

/*
 * Sends a simple Query and processes the replies up to ReadyForQuery,
 * passing rows, COPY data and COPY sources to the handlers in `x`.
 */
static pgw_status run_query(pgw_conn *w, const char *sql, const exchange *x)
{
    size_t length_at;
    int server_error = 0;
    int aborted = 0;
    row_buffers rows = {0};
    pgw_status status = PGW_FAILED;

    if (w->broken) {
        return PGW_FAILED;
    }
    w->sqlstate[0] = '\0';
    w->error[0] = '\0';
    w->command_tag[0] = '\0';

    if (begin_message(w, 'Q', &length_at) != PGW_OK || put_string(w, sql) != PGW_OK
        || end_message(w, length_at, 0) != PGW_OK || flush_output(w) != PGW_OK) {
        goto done;
    }

    for (;;) {
        char type;
        const uint8_t *body;
        size_t length;
        int handled;

        if (receive_message(w, &type, &body, &length) != PGW_OK) {
            goto done;
        }
        if (handle_asynchronous(w, type, body, length, &handled) != PGW_OK) {
            goto done;
        }
        if (handled) {
            continue;
        }

        const pgw_query_handlers *h = x->handlers;
        switch (type) {
        case 'T':
            if (parse_row_description(w, body, length, &rows) != PGW_OK) {
                goto done;
            }
            if (!aborted && h != NULL && h->columns != NULL
                && h->columns(h->userdata, rows.count, (const char *const *)rows.names) != 0) {
                aborted = 1;
                set_error(w, "the columns handler stopped the query");
            }
            break;
        case 'D': {
            int count = 0;
            if (parse_data_row(w, body, length, &rows, &count) != PGW_OK) {
                goto done;
            }
            if (!aborted && h != NULL && h->row != NULL
                && h->row(h->userdata, count, rows.values, rows.lengths) != 0) {
                aborted = 1;
                set_error(w, "the row handler stopped the query");
            }
            break;
        }
        case 'C': {
            parser p = {body, length, 0, 0};
            const char *tag = parse_string(&p);
            if (p.malformed) {
                fail(w, "malformed CommandComplete message");
                goto done;
            }
            copy_text(w->command_tag, sizeof w->command_tag, tag);
            if (!aborted && h != NULL && h->complete != NULL && h->complete(h->userdata, tag) != 0) {
                aborted = 1;
                set_error(w, "the completion handler stopped the query");
            }
            break;
        }
        case 'I':
            /* EmptyQueryResponse: the query string held no statement. */
            break;
        case 'E':
            if (record_error_response(w, body, length) != PGW_OK) {
                goto done;
            }
            server_error = 1;
            break;
        case 'H':
            if (x->sink == NULL && !aborted) {
                aborted = 1;
                set_error(w, "the statement started COPY TO STDOUT, but no data sink was given; the data was dropped");
            }
            break;
        case 'd':
            if (!aborted && x->sink != NULL && x->sink(x->sink_userdata, body, length) != 0) {
                aborted = 1;
                set_error(w, "the COPY data sink stopped the transfer; the rest of the data was dropped");
            }
            break;
        case 'c':
            /* CopyDone: CommandComplete follows. */
            break;
        case 'G':
            if (stream_copy_in(w, x->source, x->source_userdata, &aborted) != PGW_OK) {
                goto done;
            }
            break;
        case 'Z': {
            parser p = {body, length, 0, 0};
            w->transaction_status = (char)parse_byte(&p);
            if (server_error) {
                status = PGW_SERVER_ERROR;
            } else if (aborted) {
                status = PGW_ABORTED;
            } else {
                status = PGW_OK;
            }
            goto done;
        }
        default:
            fail(w, "unexpected message type '%c' in reply to a query", type);
            goto done;
        }
    }

done:
    free_names(&rows);
    free(rows.row_text);
    return status;
}

pgw_status pgw_query(pgw_conn *w, const char *sql, const pgw_query_handlers *handlers)
{
    exchange x = {.handlers = handlers};
    return run_query(w, sql, &x);
}

static int collect_columns(void *userdata, int column_count, const char *const *names)
{
    pgw_result *result = userdata;

    /* A later result set of the same query string replaces the earlier one. */
    pgw_result_clear(result);
    result->names = calloc((size_t)column_count + 1, sizeof *result->names);
    if (result->names == NULL) {
        return -1;
    }
    result->column_count = column_count;
    for (int i = 0; i < column_count; i++) {
        result->names[i] = strdup(names[i]);
        if (result->names[i] == NULL) {
            return -1;
        }
    }
    return 0;
}

static int collect_row(void *userdata, int column_count, const char *const *values, const size_t *lengths)
{
    pgw_result *result = userdata;

    if (result->row_count == result->row_capacity) {
        size_t capacity = result->row_capacity ? result->row_capacity * 2 : 16;
        char ***grown = realloc(result->rows, capacity * sizeof *grown);
        if (grown == NULL) {
            return -1;
        }
        result->rows = grown;
        result->row_capacity = capacity;
    }

    char **row = calloc((size_t)column_count + 1, sizeof *row);
    if (row == NULL) {
        return -1;
    }
    result->rows[result->row_count++] = row;
    for (int i = 0; i < column_count; i++) {
        if (values[i] == NULL) {
            continue;
        }
        row[i] = malloc(lengths[i] + 1);
        if (row[i] == NULL) {
            return -1;
        }
        memcpy(row[i], values[i], lengths[i] + 1);
    }
    return 0;
}

static int collect_complete(void *userdata, const char *tag)
{
    pgw_result *result = userdata;
    copy_text(result->command_tag, sizeof result->command_tag, tag);
    return 0;
}

pgw_status pgw_query_collect(pgw_conn *w, const char *sql, pgw_result *result)
{
    pgw_query_handlers handlers = {
        .columns = collect_columns,
        .row = collect_row,
        .complete = collect_complete,
        .userdata = result,
    };

    pgw_result_clear(result);
    pgw_status status = pgw_query(w, sql, &handlers);
    if (status == PGW_ABORTED) {
        set_error(w, "out of memory while collecting the result of a query");
    }
    return status;
}

pgw_status pgw_query_value(pgw_conn *w, const char *sql, char *value, size_t size)
{
    pgw_result result = {0};

    pgw_status status = pgw_query_collect(w, sql, &result);
    if (status == PGW_OK) {
        if (result.column_count != 1 || result.row_count != 1) {
            set_error(w, "expected 1 row with 1 column, got %zu rows with %d columns", result.row_count,
                      result.column_count);
            status = PGW_ABORTED;
        } else if (result.rows[0][0] == NULL) {
            set_error(w, "expected a value, got SQL NULL");
            status = PGW_ABORTED;
        } else if (strlen(result.rows[0][0]) >= size) {
            set_error(w, "the value of %zu bytes does not fit in %zu bytes", strlen(result.rows[0][0]), size);
            status = PGW_ABORTED;
        } else {
            copy_text(value, size, result.rows[0][0]);
        }
    }
    pgw_result_clear(&result);
    return status;
}

void pgw_result_clear(pgw_result *result)
{
    for (size_t r = 0; r < result->row_count; r++) {
        for (int c = 0; c < result->column_count; c++) {
            free(result->rows[r][c]);
        }
        free(result->rows[r]);
    }
    free(result->rows);
    if (result->names != NULL) {
        for (int c = 0; c < result->column_count; c++) {
            free(result->names[c]);
        }
        free(result->names);
    }
    memset(result, 0, sizeof *result);
}

pgw_status pgw_copy_out(pgw_conn *w, const char *sql, pgw_copy_sink sink, void *userdata)
{
    exchange x = {.sink = sink, .sink_userdata = userdata};
    return run_query(w, sql, &x);
}

pgw_status pgw_copy_in(pgw_conn *w, const char *sql, pgw_copy_source source, void *userdata)
{
    exchange x = {.source = source, .source_userdata = userdata};
    return run_query(w, sql, &x);
}

pgw_status pgw_send_raw(pgw_conn *w, const void *data, size_t length)
{
    if (w->broken) {
        return PGW_FAILED;
    }
    if (flush_output(w) != PGW_OK) {
        return PGW_FAILED;
    }
    return write_all(w, data, length);
}

pgw_status pgw_terminate(pgw_conn *w)
{
    size_t length_at;

    if (w->broken) {
        return PGW_FAILED;
    }
    if (begin_message(w, 'X', &length_at) != PGW_OK || end_message(w, length_at, 0) != PGW_OK) {
        return PGW_FAILED;
    }
    return flush_output(w);
}

/* ---- sockets ---- */

int pgw_connect_tcp(const char *host, const char *port, char *error, size_t error_size)
{
    struct addrinfo hints;
    struct addrinfo *addresses = NULL;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;

    int rc = getaddrinfo(host, port, &hints, &addresses);
    if (rc != 0) {
        snprintf(error, error_size, "could not resolve host \"%s\" port \"%s\": %s", host, port, gai_strerror(rc));
        return -1;
    }

    int last_errno = 0;
    for (struct addrinfo *a = addresses; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            /* As libpq does: small protocol messages go out at once instead of waiting for an ACK. */
            int on = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
            freeaddrinfo(addresses);
            return fd;
        }
        last_errno = errno;
        close(fd);
    }
    freeaddrinfo(addresses);
    snprintf(error, error_size, "could not connect to host \"%s\" port \"%s\": %s", host, port,
             strerror(last_errno));
    return -1;
}

int pgw_connect_unix(const char *directory, const char *port, char *error, size_t error_size)
{
    struct sockaddr_un address;

    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    int length = snprintf(address.sun_path, sizeof address.sun_path, "%s/.s.PGSQL.%s", directory, port);
    if (length < 0 || (size_t)length >= sizeof address.sun_path) {
        snprintf(error, error_size, "Unix socket path \"%s/.s.PGSQL.%s\" is longer than %zu bytes", directory, port,
                 sizeof address.sun_path - 1);
        return -1;
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(error, error_size, "could not create a Unix socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        snprintf(error, error_size, "could not connect to Unix socket \"%s\": %s", address.sun_path,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int pgw_set_nonblocking(int fd, int nonblocking)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) {
        return -1;
    }
    flags = nonblocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
    return fcntl(fd, F_SETFL, flags);
}
