/*
 * The libpq side of the client benchmarks: the same work as client_pggss.c
 * through libpq with gssencmode=require, PQgetCopyData and PQputCopyData.
 * Connection settings come from the environment that tests/fixture/pgkrb
 * exports. Each mode prints one line of key=value results on standard
 * output.
 */

#define _GNU_SOURCE

#include "benchutil.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Size of each CopyData message sent by COPY IN, as in client_pggss.c. */
#define COPY_IN_CHUNK 65536

static const char usage[] =
    "usage: client_libpq copy-out TABLE ROWS\n"
    "       client_libpq copy-in TABLE FILE ROWS\n"
    "       client_libpq connect-rate COUNT\n"
    "       client_libpq idle-memory COUNT\n";

static char conninfo[1024];

static void build_conninfo(void)
{
    int written = snprintf(conninfo, sizeof conninfo,
                           "host='%s' hostaddr='%s' port='%s' user='%s' dbname='%s' gssencmode=require",
                           require_env("PGHOST"), require_env("PGHOSTADDR"), require_env("PGPORT"),
                           require_env("PGUSER"), require_env("PGDATABASE"));
    if (written < 0 || (size_t)written >= sizeof conninfo)
        die("the connection string does not fit in %zu bytes", sizeof conninfo);
}

static PGconn *open_connection(void)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK)
        die("PQconnectdb failed: %s", PQerrorMessage(conn));
    if (!PQgssEncInUse(conn))
        die("the libpq connection is not GSSAPI-encrypted");
    return conn;
}

/* Runs `sql` and checks that it ends with `expected`; returns the result. */
static PGresult *exec_checked(PGconn *conn, const char *sql, ExecStatusType expected)
{
    PGresult *result = PQexec(conn, sql);
    if (PQresultStatus(result) != expected)
        die("%s failed with %s: %s", sql, PQresStatus(PQresultStatus(result)), PQerrorMessage(conn));
    return result;
}

/* Reads the final result of a COPY and returns its row count. */
static uint64_t finish_copy(PGconn *conn, const char *sql)
{
    PGresult *result = PQgetResult(conn);
    if (PQresultStatus(result) != PGRES_COMMAND_OK)
        die("%s failed with %s: %s", sql, PQresStatus(PQresultStatus(result)), PQerrorMessage(conn));
    uint64_t rows = strtoull(PQcmdTuples(result), NULL, 10);
    PQclear(result);
    while ((result = PQgetResult(conn)) != NULL)
        PQclear(result);
    return rows;
}

static void check_rows(uint64_t rows, uint64_t expected, const char *what)
{
    if (rows != expected)
        die("%s reported %llu rows, expected %llu", what, (unsigned long long)rows, (unsigned long long)expected);
}

/*
 * Runs a COPY ... TO STDOUT statement and counts the bytes of its rows
 * without keeping them. Returns the byte count and stores the row count in
 * `*rows`. Not inlined, so that bench/profile can restrict callgrind to it.
 */
static __attribute__((noinline)) uint64_t stream_copy_out(PGconn *conn, const char *sql, uint64_t *rows)
{
    uint64_t bytes = 0;
    PQclear(exec_checked(conn, sql, PGRES_COPY_OUT));
    for (;;) {
        char *row;
        int length = PQgetCopyData(conn, &row, 0);
        if (length > 0) {
            bytes += (uint64_t)length;
            PQfreemem(row);
        } else if (length == -1) {
            break;
        } else {
            die("PQgetCopyData failed: %s", PQerrorMessage(conn));
        }
    }
    *rows = finish_copy(conn, sql);
    return bytes;
}

static void run_copy_out(const char *table, uint64_t expected_rows)
{
    char sql[256];
    snprintf(sql, sizeof sql, "COPY %s TO STDOUT", table);
    PGconn *conn = open_connection();

    double user_before, system_before, user_after, system_after;
    uint64_t rows;
    cpu_seconds(&user_before, &system_before);
    double started = now_seconds();
    uint64_t bytes = stream_copy_out(conn, sql, &rows);
    double seconds = now_seconds() - started;
    cpu_seconds(&user_after, &system_after);

    check_rows(rows, expected_rows, "COPY TO STDOUT");
    PQfinish(conn);
    print_transfer_result(bytes, seconds, user_after - user_before, system_after - system_before);
}

static void run_copy_in(const char *table, const char *path, uint64_t expected_rows)
{
    size_t length;
    uint8_t *data = read_whole_file(path, &length);
    char sql[256];
    PGconn *conn = open_connection();
    snprintf(sql, sizeof sql, "TRUNCATE %s", table);
    PQclear(exec_checked(conn, sql, PGRES_COMMAND_OK));
    snprintf(sql, sizeof sql, "COPY %s FROM STDIN", table);

    double user_before, system_before, user_after, system_after;
    cpu_seconds(&user_before, &system_before);
    double started = now_seconds();
    PQclear(exec_checked(conn, sql, PGRES_COPY_IN));
    for (size_t offset = 0; offset < length; offset += COPY_IN_CHUNK) {
        size_t piece = length - offset < COPY_IN_CHUNK ? length - offset : COPY_IN_CHUNK;
        if (PQputCopyData(conn, (const char *)data + offset, (int)piece) != 1)
            die("PQputCopyData failed: %s", PQerrorMessage(conn));
    }
    if (PQputCopyEnd(conn, NULL) != 1)
        die("PQputCopyEnd failed: %s", PQerrorMessage(conn));
    uint64_t rows = finish_copy(conn, sql);
    double seconds = now_seconds() - started;
    cpu_seconds(&user_after, &system_after);

    check_rows(rows, expected_rows, "COPY FROM STDIN");
    PQfinish(conn);
    free(data);
    print_transfer_result(length, seconds, user_after - user_before, system_after - system_before);
}

/* As in client_pggss.c; not inlined, for bench/profile. */
static __attribute__((noinline)) void run_connect_rate(uint64_t count)
{
    double started = now_seconds();
    for (uint64_t i = 0; i < count; i++) {
        PGconn *conn = open_connection();
        PGresult *result = exec_checked(conn, "SELECT 1", PGRES_TUPLES_OK);
        if (PQntuples(result) != 1 || strcmp(PQgetvalue(result, 0, 0), "1") != 0)
            die("SELECT 1 returned %d rows", PQntuples(result));
        PQclear(result);
        PQfinish(conn);
    }
    double seconds = now_seconds() - started;
    printf("connections=%llu seconds=%.6f\n", (unsigned long long)count, seconds);
}

static void run_idle_memory(uint64_t count)
{
    raise_file_limit();
    PGconn **conns = calloc(count, sizeof *conns);
    if (!conns)
        die("out of memory for %llu connections", (unsigned long long)count);

    /* One connection first, so that libraries, krb5 configuration and the
     * credential cache are loaded before the baseline. */
    PGconn *warmup = open_connection();
    PQclear(exec_checked(warmup, "SELECT 1", PGRES_TUPLES_OK));
    PQfinish(warmup);

    long before = rss_kib();
    for (uint64_t i = 0; i < count; i++)
        conns[i] = open_connection();
    long after = rss_kib();

    for (uint64_t i = 0; i < count; i++)
        PQfinish(conns[i]);
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
    build_conninfo();

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
    return 0;
}
