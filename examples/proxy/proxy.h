/*
 * pggss-proxy: declarations shared by the event loop (pggss-proxy.c), the
 * per-connection state machine (session.c) and the PostgreSQL protocol
 * helpers (wire.c).
 */

#ifndef PGGSS_PROXY_H
#define PGGSS_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pggssenc.h"

/*
 * Capacity of each relay buffer (client to upstream and upstream to
 * client). A side is not read while the buffer it fills is full, so a
 * session buffers at most this much per direction, plus what pggssenc
 * queues (up to four 16 KiB packets each way).
 */
#define RELAY_BUFFER_SIZE (64 * 1024)

/* Time allowed to flush the last bytes to one side after the other closed. */
#define DRAIN_TIMEOUT_MS 5000

/*
 * Rounds of reads and writes one session may run before the event loop
 * serves the other sessions. A session that still has work continues in
 * the next loop iteration.
 */
#define MAX_PUMP_ROUNDS 16

/* Default of --handshake-timeout, in seconds. */
#define DEFAULT_HANDSHAKE_TIMEOUT_S 10

/* Default of --max-clients. */
#define DEFAULT_MAX_CLIENTS 500

/* Settings from the command line. */
struct proxy_config {
    /* Upstream server address and its text form for logs. */
    struct sockaddr_storage upstream_addr;
    socklen_t upstream_addr_len;
    char upstream_text[256];
    /* Acceptor settings, or NULL when not given. */
    const char *keytab;
    const char *service;
    /* Realm that client principals must belong to, or NULL to accept any. */
    const char *realm;
    bool require_gss;
    int handshake_timeout_ms;
    int max_clients;
};

/* A byte queue of RELAY_BUFFER_SIZE bytes: data[start, end) is queued. */
struct buffer {
    uint8_t data[RELAY_BUFFER_SIZE];
    size_t start;
    size_t end;
};

/*
 * Follows the typed messages that a client sends after its StartupMessage:
 * a type byte, then a 4-byte length that counts itself. With it, the proxy
 * tells a client that ended with Terminate ('X') from one that vanished in
 * the middle of the session.
 */
struct message_tracker {
    uint8_t header[5];
    unsigned header_length;
    uint32_t body_remaining;
    /* Type byte of the last message whose header was complete, or 0. */
    char last_type;
    /* Set when a length word was below 4: the stream is not a valid protocol stream. */
    bool invalid;
};

/* Parameters taken from a StartupMessage. */
struct startup_info {
    char user[128];
    char database[128];
    bool has_user;
};

struct session;

/* wire.c: PostgreSQL protocol helpers. */

/*
 * Builds an ErrorResponse with severity FATAL into `out`. Returns its
 * length, or 0 when it does not fit in `capacity` bytes.
 */
size_t build_error_response(uint8_t *out, size_t capacity, const char *sqlstate, const char *message);

/*
 * Parses the parameters of a protocol 3.x StartupMessage of `length`
 * bytes. Returns 0, or -1 with a description in `error` when the packet is
 * malformed.
 */
int parse_startup_message(const uint8_t *packet, size_t length, struct startup_info *info, char *error,
                          size_t error_size);

void tracker_feed(struct message_tracker *tracker, const uint8_t *data, size_t length);

/* True when the last complete message was Terminate and no message is partial. */
bool tracker_ended_with_terminate(const struct message_tracker *tracker);

/* Describes where the tracked stream stopped, for a log message. */
void tracker_describe(const struct message_tracker *tracker, char *out, size_t size);

uint32_t read_be32(const uint8_t *bytes);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t monotonic_ms(void);

/* Writes one line to standard error, prefixed with a UTC timestamp. */
void log_line(const char *format, ...) __attribute__((format(printf, 1, 2)));

/*
 * Appends " key=value" to `out`, quoting the value with backslash escapes
 * when it contains anything but letters, digits and @._/:+-. An empty or
 * NULL value is written as "-".
 */
void append_field(char *out, size_t size, const char *key, const char *value);

/* Formats a socket address as "1.2.3.4:5" or "[::1]:5". */
void format_address(const struct sockaddr *addr, socklen_t addr_len, char *out, size_t size);

/* session.c: one client connection. */

/*
 * Creates a session for an accepted, non-blocking client socket, which it
 * then owns. Returns NULL when pggssenc could not be set up, after logging
 * the failure and closing the socket.
 */
struct session *session_new(const struct proxy_config *config, int client_fd, const struct sockaddr *addr,
                            socklen_t addr_len, int64_t now);

/*
 * Runs the session until it waits for its sockets: the handshake, the
 * upstream connection or the relay. Each step tries its reads and writes
 * and stops at EAGAIN, so the caller need not pass the poll(2) results.
 */
void session_run(struct session *session);

/* Closes the session with an error when its deadline has passed. */
void session_check_deadline(struct session *session, int64_t now);

/* Ends the session because the proxy stops. */
void session_shutdown(struct session *session);

/* True once the session has ended and logged its line. The caller then frees it. */
bool session_finished(const struct session *session);

/*
 * Returns the poll(2) events the session waits for on its client and
 * upstream sockets (fd -1 when it has none), and whether it has work to do
 * without waiting.
 */
void session_poll_events(const struct session *session, int *client_fd, short *client_events, int *upstream_fd,
                         short *upstream_events, bool *ready);

/* Monotonic time at which the session times out, or 0 for none. */
int64_t session_deadline(const struct session *session);

void session_free(struct session *session);

#endif /* PGGSS_PROXY_H */
