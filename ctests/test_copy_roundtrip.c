/*
 * COPY of more than 50 MiB out of one table and back into another over an
 * encrypted connection, checked on the client (bytes and FNV-1a hash) and
 * on the server (md5 of every row, EXCEPT ALL).
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

/* About 100 bytes of COPY text per row: 560000 rows make about 53 MiB. */
#define ROW_COUNT 560000
#define MIN_COPY_BYTES (50u * 1024 * 1024)

/*
 * Sizes of the CopyData chunks sent back, in turn: tiny ones, sizes around
 * one packet's plaintext (16384 bytes less GSSAPI overhead) and sizes of
 * many packets, which pgwire writes in one pggss_conn_write call.
 */
static const size_t chunk_sizes[] = {
    1, 2, 3, 5, 8, 100, 1000, 8191, 8192, 16339, 16340, 16379, 16380, 16384,
    65535, 65536, 65537, 100000, 1048576, 4194304,
};

typedef struct {
    const uint8_t *data;
    size_t length;
    size_t offset;
    size_t next_size;
    size_t chunks;
} chunk_source;

static int next_chunk(void *userdata, const uint8_t **data, size_t *length)
{
    chunk_source *source = userdata;

    if (source->offset == source->length) {
        return 0;
    }
    size_t size = chunk_sizes[source->next_size];
    source->next_size = (source->next_size + 1) % (sizeof chunk_sizes / sizeof chunk_sizes[0]);
    if (size > source->length - source->offset) {
        size = source->length - source->offset;
    }
    *data = source->data + source->offset;
    *length = size;
    source->offset += size;
    source->chunks++;
    return 1;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void check_table_summary(pgw_conn *w, const char *table, char *summary, size_t size)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) || ' ' || md5(string_agg(i::text || ':' || coalesce(s, '<NULL>'), ',' ORDER BY i)) "
             "FROM %s",
             table);
    summary[0] = '\0';
    CHECK_PGW(w, pgw_query_value(w, sql, summary, size));
}

int main(void)
{
    session s;
    char sql[512];
    char value[128];
    struct timespec start;

    open_encrypted_session(&s, NULL);

    /*
     * Every 13th value has a tab, a backslash and a newline, which COPY
     * escapes; every 997th is NULL (\N).
     */
    REQUIRE_PGW(&s.w, pgw_query(&s.w, "CREATE TEMP TABLE copy_src (i int PRIMARY KEY, s text)", NULL));
    snprintf(sql, sizeof sql,
             "INSERT INTO copy_src SELECT i, CASE WHEN i %% 997 = 0 THEN NULL "
             "WHEN i %% 13 = 0 THEN E'tab\\there, backslash \\\\ and newline\\n' || md5(i::text) "
             "ELSE repeat(md5(i::text), 3) END FROM generate_series(1, %d) i",
             ROW_COUNT);
    REQUIRE_PGW(&s.w, pgw_query(&s.w, sql, NULL));
    snprintf(value, sizeof value, "INSERT 0 %d", ROW_COUNT);
    CHECK_STR(s.w.command_tag, value);
    REQUIRE_PGW(&s.w, pgw_query(&s.w, "CREATE TEMP TABLE copy_dst (LIKE copy_src)", NULL));

    /* Out. */
    copy_buffer first;
    copy_buffer_init(&first);
    clock_gettime(CLOCK_MONOTONIC, &start);
    REQUIRE_PGW(&s.w, pgw_copy_out(&s.w, "COPY copy_src TO STDOUT", copy_buffer_sink, &first));
    printf("COPY TO STDOUT: %zu bytes in %llu CopyData messages, %.2f s\n", first.length,
           (unsigned long long)first.messages, seconds_since(&start));
    snprintf(value, sizeof value, "COPY %d", ROW_COUNT);
    CHECK_STR(s.w.command_tag, value);
    CHECK(first.length >= MIN_COPY_BYTES);
    const char *first_line = "1\tc4ca4238a0b923820dcc509a6f75849bc4ca4238a0b923820dcc509a6f75849b"
                             "c4ca4238a0b923820dcc509a6f75849b\n";
    size_t first_line_length = strlen(first_line);
    CHECK_BYTES(first.data, first.length < first_line_length ? first.length : first_line_length, first_line,
                first_line_length);
    CHECK(first.data[first.length - 1] == '\n');

    /* Back in, in chunks of varying size. */
    chunk_source source = {.data = first.data, .length = first.length};
    clock_gettime(CLOCK_MONOTONIC, &start);
    REQUIRE_PGW(&s.w, pgw_copy_in(&s.w, "COPY copy_dst FROM STDIN", next_chunk, &source));
    printf("COPY FROM STDIN: %zu bytes in %zu CopyData messages, %.2f s\n", source.offset, source.chunks,
           seconds_since(&start));
    CHECK_INT(source.offset, first.length);
    CHECK_STR(s.w.command_tag, value);

    /* The two tables on the server are equal. */
    char source_summary[128];
    char copy_summary[128];
    check_table_summary(&s.w, "copy_src", source_summary, sizeof source_summary);
    check_table_summary(&s.w, "copy_dst", copy_summary, sizeof copy_summary);
    CHECK_STR(copy_summary, source_summary);
    snprintf(value, sizeof value, "%d ", ROW_COUNT);
    CHECK_PREFIX(source_summary, value);
    if (CHECK_PGW(&s.w, pgw_query_value(&s.w,
                                        "SELECT count(*) FROM (SELECT * FROM copy_src EXCEPT ALL "
                                        "SELECT * FROM copy_dst) AS missing",
                                        value, sizeof value))) {
        CHECK_STR(value, "0");
    }
    if (CHECK_PGW(&s.w, pgw_query_value(&s.w, "SELECT count(*) FROM copy_dst WHERE s IS NULL", value,
                                        sizeof value))) {
        snprintf(sql, sizeof sql, "%d", ROW_COUNT / 997);
        CHECK_STR(value, sql);
    }
    if (CHECK_PGW(&s.w, pgw_query_value(&s.w, "SELECT s FROM copy_dst WHERE i = 13", value, sizeof value))) {
        CHECK_STR(value, "tab\there, backslash \\ and newline\nc51ce410c124a10e0db5e4b97fc2af39");
    }

    /* Out again: the same bytes. */
    copy_buffer second;
    copy_buffer_init(&second);
    REQUIRE_PGW(&s.w, pgw_copy_out(&s.w, "COPY copy_dst TO STDOUT", copy_buffer_sink, &second));
    CHECK_INT(second.length, first.length);
    CHECK(second.hash == first.hash);
    CHECK_BYTES(second.data, second.length, first.data, first.length);
    printf("FNV-1a 64 of both streams: %016llx, %016llx\n", (unsigned long long)first.hash,
           (unsigned long long)second.hash);

    CHECK_INT(pggss_conn_last_result(s.gss), PGGSS_RESULT_OK);
    CHECK(pggss_conn_encryption_in_use(s.gss));

    copy_buffer_free(&first);
    copy_buffer_free(&second);
    close_session(&s);
    return test_finish();
}
