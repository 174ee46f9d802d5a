/*
 * The pggssenc side of the client benchmarks: the same work as
 * client_libpq.c, over a TCP socket encrypted by pggssenc and the minimal
 * frontend protocol of pgfe.c. Connection settings come from the
 * environment that tests/fixture/pgkrb exports. Each mode prints one line
 * of key=value results on standard output.
 */

#define _GNU_SOURCE

#include "benchutil.h"
#include "pgfe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Size of the receive buffer and of each CopyData message sent by COPY IN. */
#define RECEIVE_BUFFER_SIZE (256 * 1024)
#define COPY_IN_CHUNK 65536

static const char usage[] =
    "usage: client_pggss copy-out TABLE ROWS\n"
    "       client_pggss copy-in TABLE FILE ROWS\n"
    "       client_pggss connect-rate COUNT\n"
    "       client_pggss idle-memory COUNT\n";

static pgfe_params params;
static pgfe_buffer in_buffer;
static pgfe_buffer out_buffer;

static void open_connection(pgfe_conn *conn)
{
    pgfe_connect(conn, &params, &in_buffer, &out_buffer);
}

static void check_rows(uint64_t rows, uint64_t expected, const char *what)
{
    if (rows != expected)
        die("%s reported %llu rows, expected %llu", what, (unsigned long long)rows, (unsigned long long)expected);
}

/*
 * The timed part of a COPY OUT run, as in client_libpq.c. Not inlined, so
 * that bench/profile can restrict callgrind to it.
 */
static __attribute__((noinline)) uint64_t stream_copy_out(pgfe_conn *conn, const char *sql, uint64_t *rows)
{
    return pgfe_copy_out(conn, sql, rows);
}

/* COPY TABLE TO STDOUT, timed from the Query message to ReadyForQuery. */
static void run_copy_out(const char *table, uint64_t expected_rows)
{
    char sql[256];
    snprintf(sql, sizeof sql, "COPY %s TO STDOUT", table);
    pgfe_conn conn;
    open_connection(&conn);

    double user_before, system_before, user_after, system_after;
    uint64_t rows;
    cpu_seconds(&user_before, &system_before);
    double started = now_seconds();
    uint64_t bytes = stream_copy_out(&conn, sql, &rows);
    double seconds = now_seconds() - started;
    cpu_seconds(&user_after, &system_after);

    check_rows(rows, expected_rows, "COPY TO STDOUT");
    pgfe_finish(&conn);
    print_transfer_result(bytes, seconds, user_after - user_before, system_after - system_before);
}

/* TRUNCATE TABLE (not timed), then COPY TABLE FROM STDIN with FILE's bytes. */
static void run_copy_in(const char *table, const char *path, uint64_t expected_rows)
{
    size_t length;
    uint8_t *data = read_whole_file(path, &length);
    char sql[256];
    pgfe_conn conn;
    open_connection(&conn);
    snprintf(sql, sizeof sql, "TRUNCATE %s", table);
    pgfe_query(&conn, sql, NULL, 0);
    snprintf(sql, sizeof sql, "COPY %s FROM STDIN", table);

    double user_before, system_before, user_after, system_after;
    cpu_seconds(&user_before, &system_before);
    double started = now_seconds();
    uint64_t rows = pgfe_copy_in(&conn, sql, data, length, COPY_IN_CHUNK);
    double seconds = now_seconds() - started;
    cpu_seconds(&user_after, &system_after);

    check_rows(rows, expected_rows, "COPY FROM STDIN");
    pgfe_finish(&conn);
    free(data);
    print_transfer_result(length, seconds, user_after - user_before, system_after - system_before);
}

/*
 * COUNT connections in sequence, each with SELECT 1 and Terminate. Not
 * inlined, so that bench/profile can restrict callgrind to it.
 */
static __attribute__((noinline)) void run_connect_rate(uint64_t count)
{
    double started = now_seconds();
    for (uint64_t i = 0; i < count; i++) {
        pgfe_conn conn;
        char value[16];
        open_connection(&conn);
        uint64_t rows = pgfe_query(&conn, "SELECT 1", value, sizeof value);
        if (rows != 1 || strcmp(value, "1") != 0)
            die("SELECT 1 returned %llu rows and the value \"%s\"", (unsigned long long)rows, value);
        pgfe_finish(&conn);
    }
    double seconds = now_seconds() - started;
    printf("connections=%llu seconds=%.6f\n", (unsigned long long)count, seconds);
}

/*
 * Opens COUNT connections and keeps them idle after ReadyForQuery. The
 * connections share one pair of protocol buffers, so the RSS growth is
 * what pggssenc and the socket layer of libc hold per connection.
 */
static void run_idle_memory(uint64_t count)
{
    raise_file_limit();
    pgfe_conn *conns = calloc(count, sizeof *conns);
    if (!conns)
        die("out of memory for %llu connections", (unsigned long long)count);

    /* One connection first, so that libraries, krb5 configuration and the
     * credential cache are loaded before the baseline. */
    pgfe_conn warmup;
    open_connection(&warmup);
    pgfe_query(&warmup, "SELECT 1", NULL, 0);
    pgfe_finish(&warmup);

    long before = rss_kib();
    for (uint64_t i = 0; i < count; i++)
        open_connection(&conns[i]);
    long after = rss_kib();

    for (uint64_t i = 0; i < count; i++)
        pgfe_finish(&conns[i]);
    free(conns);
    printf("connections=%llu rss_before_kib=%ld rss_after_kib=%ld\n", (unsigned long long)count, before, after);
}

int main(int argc, char **argv)
{
    set_program_name(argv[0]);
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    pgfe_params_from_env(&params);
    pgfe_buffer_init(&in_buffer, RECEIVE_BUFFER_SIZE);
    pgfe_buffer_init(&out_buffer, COPY_IN_CHUNK + RECEIVE_BUFFER_SIZE);

    const char *mode = argv[1];
    if (strcmp(mode, "copy-out") == 0 && argc == 4)
        run_copy_out(argv[2], parse_count(argv[3], 1, "ROWS"));
    else if (strcmp(mode, "copy-in") == 0 && argc == 5)
        run_copy_in(argv[2], argv[3], parse_count(argv[4], 1, "ROWS"));
    else if (strcmp(mode, "connect-rate") == 0 && argc == 3)
        run_connect_rate(parse_count(argv[2], 1, "COUNT"));
    else if (strcmp(mode, "idle-memory") == 0 && argc == 3)
        run_idle_memory(parse_count(argv[2], 1, "COUNT"));
    else {
        fputs(usage, stderr);
        return 2;
    }

    pgfe_buffer_free(&in_buffer);
    pgfe_buffer_free(&out_buffer);
    return 0;
}
