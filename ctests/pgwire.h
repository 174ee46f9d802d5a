/*
 * pgwire: a small PostgreSQL frontend/backend protocol 3.0 client that
 * moves its bytes through pggss_conn_read and pggss_conn_write.
 *
 * It covers what the tests and examples need: the StartupMessage and the
 * messages up to ReadyForQuery, simple Query, COPY TO STDOUT, COPY FROM
 * STDIN and Terminate. The calls block until they finish. When the
 * transport reports EAGAIN, pgwire waits with poll(2) on the socket given
 * to pgw_init, after checking pggss_conn_pending. Extended Query, SSL and
 * the GSSAPI authentication exchange (which the server skips on an
 * encrypted connection) are not implemented.
 */

#ifndef PGWIRE_H
#define PGWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "pggssenc.h"

/* Default time that pgwire waits for the socket before it gives up. */
#define PGW_DEFAULT_TIMEOUT_MS 60000

/* Status of a pgwire call. */
typedef enum {
    /* The call succeeded. */
    PGW_OK = 0,
    /*
     * The server sent an ErrorResponse, then ReadyForQuery: the connection
     * is still usable. pgw_conn.error and pgw_conn.sqlstate describe it.
     */
    PGW_SERVER_ERROR = 1,
    /*
     * A callback of the caller returned an error. pgwire finished the
     * exchange, so the connection is still usable.
     */
    PGW_ABORTED = 2,
    /* The connection failed and is unusable. pgw_conn.error describes the failure. */
    PGW_FAILED = -1,
} pgw_status;

/* Counters of transport events, for tests that check which paths ran. */
typedef struct {
    /* pggss_conn_read calls that returned data. */
    uint64_t reads;
    /* pggss_conn_read calls that failed with EAGAIN. */
    uint64_t read_would_block;
    /* pggss_conn_write calls that accepted data. */
    uint64_t writes;
    /* pggss_conn_write calls that failed with EAGAIN. */
    uint64_t write_would_block;
    /* poll(2) calls made while waiting for the socket. */
    uint64_t polls;
    /* Reads made without polling because pggss_conn_pending was nonzero. */
    uint64_t pending_reads;
    /* Plaintext bytes received and sent. */
    uint64_t bytes_read;
    uint64_t bytes_written;
} pgw_stats;

typedef struct {
    /* The pggssenc connection; borrowed, and never freed by pgwire. */
    pggss_conn *gss;
    /* Socket to poll(2) on EAGAIN; -1 when EAGAIN must not happen. */
    int fd;
    /* Milliseconds to wait for the socket before failing. */
    int timeout_ms;
    /*
     * Largest number of bytes asked from one pggss_conn_read call and
     * offered to one pggss_conn_write call. Tests lower them to force
     * partial I/O.
     */
    size_t read_chunk;
    size_t write_chunk;
    /*
     * Before each read, wait for the socket first unless
     * pggss_conn_pending is nonzero, as an event loop does.
     * Off by default: then pgwire reads first and polls only after EAGAIN.
     */
    int poll_before_read;

    /* Received bytes not yet parsed: in[in_start, in_end). */
    uint8_t *in;
    size_t in_start;
    size_t in_end;
    size_t in_capacity;

    /* Messages built and not yet written. */
    uint8_t *out;
    size_t out_length;
    size_t out_capacity;

    /* Session data from the server. */
    int32_t backend_pid;
    int32_t secret_key;
    char transaction_status;
    char server_version[64];

    /* The CommandComplete tag of the last command, such as "COPY 1000". */
    char command_tag[128];
    /* SQLSTATE of the last ErrorResponse, or "" when there was none. */
    char sqlstate[6];
    /* Description of the last failure or ErrorResponse. */
    char error[2048];
    /* Nonzero once the connection failed; every later call fails. */
    int broken;

    pgw_stats stats;
} pgw_conn;

/*
 * Handlers for the results of pgw_query. Each one may be NULL. A nonzero
 * return from a handler stops further handler calls and makes pgw_query
 * return PGW_ABORTED once the server is ready again.
 */
typedef struct {
    /* Receives the column names of a result set (RowDescription). */
    int (*columns)(void *userdata, int column_count, const char *const *names);
    /*
     * Receives one row. values[i] is a NUL-terminated copy of the text
     * value, or NULL for SQL NULL; lengths[i] is its length in bytes.
     * The arrays are valid only during the call.
     */
    int (*row)(void *userdata, int column_count, const char *const *values, const size_t *lengths);
    /* Receives the CommandComplete tag of each statement. */
    int (*complete)(void *userdata, const char *tag);
    void *userdata;
} pgw_query_handlers;

/* Rows of the last result set of a query, collected in memory. */
typedef struct {
    int column_count;
    /* column_count names. */
    char **names;
    size_t row_count;
    size_t row_capacity;
    /* rows[r][c]: a NUL-terminated string, or NULL for SQL NULL. */
    char ***rows;
    /* The CommandComplete tag of the last statement. */
    char command_tag[128];
} pgw_result;

/*
 * Receives one CopyData payload of COPY TO STDOUT. Returns 0 to go on; a
 * nonzero return makes pgw_copy_out drop the rest and return PGW_ABORTED.
 */
typedef int (*pgw_copy_sink)(void *userdata, const uint8_t *data, size_t length);

/*
 * Supplies the next chunk for COPY FROM STDIN: stores a pointer and length
 * (which may be 0) and returns 1; returns 0 at the end of the data, or -1
 * to send CopyFail and make pgw_copy_in return PGW_ABORTED. The chunk must
 * stay valid until the next call.
 */
typedef int (*pgw_copy_source)(void *userdata, const uint8_t **data, size_t *length);

/*
 * Initializes `w` for the negotiated (or fallen-back) connection `gss`,
 * whose transport is socket `fd`, or -1 when there is no socket to poll.
 * Returns 0, or -1 when memory is short.
 */
int pgw_init(pgw_conn *w, pggss_conn *gss, int fd);

/* Releases the buffers of `w`. The pggss connection and socket stay. */
void pgw_destroy(pgw_conn *w);

/*
 * Drives pggss_conn_connect_poll to its end, waiting with poll(2) on
 * READING and WRITING. Returns PGW_OK when it returned
 * PGGSS_POLLING_STATUS_OK, else PGW_FAILED with the library's message in
 * w->error. `polls_out`, when not NULL, receives the number of
 * connect_poll calls.
 */
pgw_status pgw_negotiate(pgw_conn *w, unsigned *polls_out);

/*
 * Sends a StartupMessage for protocol 3.0 and reads the server's replies up
 * to ReadyForQuery. `application_name` may be NULL. Only AuthenticationOk
 * is supported: a request for any other authentication method fails.
 */
pgw_status pgw_startup(pgw_conn *w, const char *user, const char *database, const char *application_name);

/* Runs `sql` with the simple Query protocol and passes results to `handlers`. */
pgw_status pgw_query(pgw_conn *w, const char *sql, const pgw_query_handlers *handlers);

/*
 * Runs `sql` and stores the last result set in `result`, which the caller
 * releases with pgw_result_clear, also after a failure.
 */
pgw_status pgw_query_collect(pgw_conn *w, const char *sql, pgw_result *result);

/*
 * Runs `sql`, which must return exactly one row with one column, and
 * copies the value into `value`. Fails for SQL NULL or a value that does
 * not fit.
 */
pgw_status pgw_query_value(pgw_conn *w, const char *sql, char *value, size_t size);

void pgw_result_clear(pgw_result *result);

/* Runs a COPY ... TO STDOUT statement and streams each CopyData to `sink`. */
pgw_status pgw_copy_out(pgw_conn *w, const char *sql, pgw_copy_sink sink, void *userdata);

/*
 * Runs a COPY ... FROM STDIN statement, sends each chunk from `source` as
 * one CopyData message, then CopyDone.
 */
pgw_status pgw_copy_in(pgw_conn *w, const char *sql, pgw_copy_source source, void *userdata);

/*
 * Writes `length` bytes of already-built protocol messages, waiting on
 * EAGAIN. For tests that pipeline messages.
 */
pgw_status pgw_send_raw(pgw_conn *w, const void *data, size_t length);

/* Sends Terminate. The server then closes the connection. */
pgw_status pgw_terminate(pgw_conn *w);

/*
 * Connects a blocking TCP socket to `host` (a name or numeric address) and
 * `port`, trying each address getaddrinfo returns. Returns the socket, or
 * -1 with a message in `error`.
 */
int pgw_connect_tcp(const char *host, const char *port, char *error, size_t error_size);

/*
 * Connects a blocking socket to the PostgreSQL Unix-domain socket
 * DIRECTORY/.s.PGSQL.PORT. Returns the socket, or -1 with a message in
 * `error`.
 */
int pgw_connect_unix(const char *directory, const char *port, char *error, size_t error_size);

/* Sets or clears O_NONBLOCK on `fd`. Returns 0, or -1 with errno set. */
int pgw_set_nonblocking(int fd, int nonblocking);

/*
 * Writes a description of the connection's last pggssenc failure: the
 * result code, its text and the error message.
 */
void pgw_describe_gss_failure(const pggss_conn *gss, char *buffer, size_t size);

#endif /* PGWIRE_H */
