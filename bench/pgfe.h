/*
 * pgfe: the minimal PostgreSQL frontend protocol (version 3.0) that the
 * pggssenc benchmark client needs, over a blocking TCP socket encrypted by
 * pggssenc: StartupMessage, simple Query, COPY TO STDOUT, COPY FROM STDIN
 * and Terminate. Every failure is fatal: the functions print the reason and
 * exit, because a benchmark run with an error has no figure to report.
 */

#ifndef PGFE_H
#define PGFE_H

#include <stddef.h>
#include <stdint.h>

#include "pggssenc.h"

/*
 * A growable byte buffer. Connections that run one after another may share
 * one pair of buffers, so that an idle connection keeps none.
 */
typedef struct {
    uint8_t *data;
    size_t start;
    size_t end;
    size_t capacity;
} pgfe_buffer;

typedef struct {
    pggss_conn *gss;
    int fd;
    /* Received plaintext not yet parsed: in->data[in->start, in->end). */
    pgfe_buffer *in;
    /* Messages built and not yet written. */
    pgfe_buffer *out;
} pgfe_conn;

/* Where and as whom to connect. */
typedef struct {
    /* Numeric IPv4 address to connect to, such as "127.0.0.1". */
    const char *hostaddr;
    /* Host name for the GSSAPI target name krbsrvname@host. */
    const char *host;
    int port;
    const char *user;
    const char *database;
} pgfe_params;

/* Fills `params` from PGHOSTADDR, PGHOST, PGPORT, PGUSER and PGDATABASE. */
void pgfe_params_from_env(pgfe_params *params);

/* Allocates `buffer` with `capacity` bytes. */
void pgfe_buffer_init(pgfe_buffer *buffer, size_t capacity);
void pgfe_buffer_free(pgfe_buffer *buffer);

/*
 * Connects over TCP with TCP_NODELAY (as libpq sets it), negotiates GSSAPI
 * encryption with gssencmode=require and reads the server's replies to the
 * StartupMessage up to ReadyForQuery.
 */
void pgfe_connect(pgfe_conn *conn, const pgfe_params *params, pgfe_buffer *in, pgfe_buffer *out);

/*
 * Runs `sql` with the simple Query protocol, discarding rows. Returns the
 * number of DataRow messages. When `first_value` is not NULL, the first
 * column of the first row is copied into it (at most `size` - 1 bytes).
 */
uint64_t pgfe_query(pgfe_conn *conn, const char *sql, char *first_value, size_t size);

/*
 * Runs a COPY ... TO STDOUT statement and counts the payload bytes of the
 * CopyData messages without keeping them. Returns the byte count and
 * stores the row count of the CommandComplete tag in `*rows`.
 */
uint64_t pgfe_copy_out(pgfe_conn *conn, const char *sql, uint64_t *rows);

/*
 * Runs a COPY ... FROM STDIN statement and sends `data` as CopyData
 * messages of at most `chunk` bytes each, then CopyDone. Returns the row
 * count of the CommandComplete tag.
 */
uint64_t pgfe_copy_in(pgfe_conn *conn, const char *sql, const uint8_t *data, size_t length, size_t chunk);

/* Sends Terminate, frees the pggssenc connection and closes the socket. */
void pgfe_finish(pgfe_conn *conn);

#endif /* PGFE_H */
