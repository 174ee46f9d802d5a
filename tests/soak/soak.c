/*
 * Soak test of the pggssenc client against the fixture's PostgreSQL server.
 * Each connection is a full cycle: TCP connect to $PGHOSTADDR:$PGPORT,
 * GSSAPI handshake with host=localhost gssencmode=require, StartupMessage
 * for $PGUSER/$PGDATABASE, one query whose result is checked, Terminate,
 * pggss_conn_free and close.
 *
 *   soak cycles N WARMUP   N cycles in one thread; VmRSS is read after
 *                          WARMUP cycles and after the last one, and the
 *                          growth must stay under 1 MiB
 *   soak threads T C       T threads, each making C connections one after
 *                          the other, all threads at once
 *   soak repeat N          N cycles with every result checked and no VmRSS
 *                          limit, for runs under ASan or valgrind, whose
 *                          quarantine and shadow memory inflate VmRSS; those
 *                          tools report leaks themselves
 *
 * Prints PASS or FAIL lines, the measurements, and "N passed, M failed".
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pggssenc.h"

/* Allowed VmRSS growth between the end of the warm-up and the last cycle. */
#define MAX_RSS_GROWTH_KIB 1024

struct cycle_error {
    char text[512];
};

static void set_error(struct cycle_error *error, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void set_error(struct cycle_error *error, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(error->text, sizeof error->text, format, args);
    va_end(args);
}

static const char *require_env(const char *name)
{
    const char *value = getenv(name);
    if (value == NULL || value[0] == '\0') {
        fprintf(stderr, "soak: %s is not set: run inside tests/fixture/pgkrb run\n", name);
        exit(2);
    }
    return value;
}

static int connect_server(struct cycle_error *error)
{
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)atoi(require_env("PGPORT")));
    if (inet_pton(AF_INET, require_env("PGHOSTADDR"), &address.sin_addr) != 1) {
        set_error(error, "PGHOSTADDR is not an IPv4 address");
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        set_error(error, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        set_error(error, "connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(pggss_conn *conn, const void *data, size_t len, struct cycle_error *error)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = pggss_conn_write(conn, p, len);
        if (n <= 0) {
            set_error(error, "pggss_conn_write: %s (result %d)", pggss_conn_error_message(conn),
                      (int)pggss_conn_last_result(conn));
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool receive_exact(pggss_conn *conn, void *data, size_t len, struct cycle_error *error)
{
    uint8_t *p = data;
    while (len > 0) {
        ssize_t n = pggss_conn_read(conn, p, len);
        if (n <= 0) {
            set_error(error, "pggss_conn_read returned %zd: %s (result %d)", n, pggss_conn_error_message(conn),
                      (int)pggss_conn_last_result(conn));
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* One backend message: its type byte and body. */
struct message {
    char type;
    uint32_t len;
    uint8_t body[8192];
};

static bool receive_message(pggss_conn *conn, struct message *m, struct cycle_error *error)
{
    uint8_t header[5];
    if (!receive_exact(conn, header, sizeof header, error))
        return false;
    m->type = (char)header[0];
    uint32_t len = ((uint32_t)header[1] << 24) | ((uint32_t)header[2] << 16) | ((uint32_t)header[3] << 8) | header[4];
    if (len < 4 || len - 4 > sizeof m->body) {
        set_error(error, "message '%c' has invalid length %u", m->type, len);
        return false;
    }
    m->len = len - 4;
    return receive_exact(conn, m->body, m->len, error);
}

static void append_u32(uint8_t **p, uint32_t value)
{
    (*p)[0] = (uint8_t)(value >> 24);
    (*p)[1] = (uint8_t)(value >> 16);
    (*p)[2] = (uint8_t)(value >> 8);
    (*p)[3] = (uint8_t)value;
    *p += 4;
}

static void append_string(uint8_t **p, const char *text)
{
    size_t len = strlen(text) + 1;
    memcpy(*p, text, len);
    *p += len;
}

/* Reads messages up to ReadyForQuery; fails on ErrorResponse. */
static bool wait_ready(pggss_conn *conn, struct message *m, long expected_value, bool *saw_value,
                       struct cycle_error *error)
{
    for (;;) {
        if (!receive_message(conn, m, error))
            return false;
        switch (m->type) {
        case 'Z':
            return true;
        case 'E':
            set_error(error, "server sent an ErrorResponse");
            return false;
        case 'R':
            if (m->len != 4 || memcmp(m->body, "\0\0\0\0", 4) != 0) {
                set_error(error, "expected AuthenticationOk, got another authentication request");
                return false;
            }
            break;
        case 'D': {
            /* DataRow with one column: int16 count, int32 length, text. */
            char text[32];
            if (m->len < 6 || m->body[0] != 0 || m->body[1] != 1) {
                set_error(error, "DataRow does not have one column");
                return false;
            }
            uint32_t len = ((uint32_t)m->body[2] << 24) | ((uint32_t)m->body[3] << 16) |
                           ((uint32_t)m->body[4] << 8) | m->body[5];
            if (len >= sizeof text || len != m->len - 6) {
                set_error(error, "DataRow column has length %u", len);
                return false;
            }
            memcpy(text, m->body + 6, len);
            text[len] = '\0';
            if (strtol(text, NULL, 10) != expected_value) {
                set_error(error, "query returned %s, expected %ld", text, expected_value);
                return false;
            }
            *saw_value = true;
            break;
        }
        default:
            /* ParameterStatus, BackendKeyData, RowDescription, CommandComplete. */
            break;
        }
    }
}

/* Runs one full cycle. `value` makes each query's result distinct. */
static bool run_cycle(long value, struct cycle_error *error)
{
    int fd = connect_server(error);
    if (fd < 0)
        return false;
    pggss_conn *conn = NULL;
    bool ok = false;
    struct message *m = malloc(sizeof *m);
    if (m == NULL) {
        set_error(error, "out of memory");
        goto done;
    }
    if (pggss_conn_new(&conn) != PGGSS_RESULT_OK ||
        pggss_conn_set_conninfo(conn, "host=localhost gssencmode=require") != PGGSS_RESULT_OK ||
        pggss_conn_set_fd(conn, fd) != PGGSS_RESULT_OK) {
        set_error(error, "could not set up the connection: %s", pggss_conn_error_message(conn));
        goto done;
    }
    int status = pggss_conn_connect_poll(conn);
    if (status != PGGSS_POLLING_STATUS_OK || pggss_conn_outcome(conn) != PGGSS_OUTCOME_ENCRYPTED) {
        set_error(error, "negotiation ended with poll status %d, outcome %d: %s", status,
                  (int)pggss_conn_outcome(conn), pggss_conn_error_message(conn));
        goto done;
    }

    uint8_t packet[512], *p = packet + 4;
    append_u32(&p, 196608);
    append_string(&p, "user");
    append_string(&p, require_env("PGUSER"));
    append_string(&p, "database");
    append_string(&p, require_env("PGDATABASE"));
    *p++ = '\0';
    uint8_t *start = packet;
    append_u32(&start, (uint32_t)(p - packet));
    bool saw_value = false;
    if (!send_all(conn, packet, (size_t)(p - packet), error) || !wait_ready(conn, m, 0, &saw_value, error))
        goto done;

    char query[64];
    snprintf(query, sizeof query, "SELECT %ld::int8 + 1", value);
    p = packet;
    *p++ = 'Q';
    append_u32(&p, (uint32_t)(4 + strlen(query) + 1));
    append_string(&p, query);
    if (!send_all(conn, packet, (size_t)(p - packet), error) || !wait_ready(conn, m, value + 1, &saw_value, error))
        goto done;
    if (!saw_value) {
        set_error(error, "the query returned no row");
        goto done;
    }
    if (!send_all(conn, "X\0\0\0\4", 5, error))
        goto done;
    ok = true;

done:
    pggss_conn_free(conn);
    close(fd);
    free(m);
    return ok;
}

static long vm_rss_kib(void)
{
    FILE *status = fopen("/proc/self/status", "r");
    if (status == NULL)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, status) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(status);
    return kib;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int soak_repeat(long cycles)
{
    struct cycle_error error = {""};
    long errors = 0;
    double started = now_seconds();
    for (long i = 1; i <= cycles; i++) {
        if (!run_cycle(i, &error)) {
            if (errors < 5)
                printf("    cycle %ld failed: %s\n", i, error.text);
            errors++;
        }
    }
    printf("    %ld cycles in %.1f s, %ld failed\n", cycles, now_seconds() - started, errors);
    printf("%s soak_repeat_all_succeed\n", errors == 0 ? "PASS" : "FAIL");
    printf("%d passed, %d failed\n", errors == 0, errors != 0);
    return errors == 0 ? 0 : 1;
}

static int soak_cycles(long cycles, long warmup)
{
    unsigned passed = 0, failed = 0;
    long rss_after_warmup = -1, errors = 0;
    struct cycle_error error = {""};
    double started = now_seconds(), warmed = started;

    for (long i = 1; i <= cycles; i++) {
        if (!run_cycle(i, &error)) {
            if (errors < 5)
                printf("    cycle %ld failed: %s\n", i, error.text);
            errors++;
        }
        if (i == warmup) {
            rss_after_warmup = vm_rss_kib();
            warmed = now_seconds();
        }
        if (i % 1000 == 0)
            printf("    %ld cycles, VmRSS %ld KiB\n", i, vm_rss_kib());
    }
    long rss_end = vm_rss_kib();
    double finished = now_seconds();

    printf("    %ld cycles in %.1f s (%.2f ms per cycle), %ld failed\n", cycles, finished - started,
           (finished - started) * 1000.0 / (double)cycles, errors);
    printf("    VmRSS after %ld warm-up cycles: %ld KiB; after %ld cycles: %ld KiB; growth %ld KiB over %ld cycles "
           "(%.1f s)\n",
           warmup, rss_after_warmup, cycles, rss_end, rss_end - rss_after_warmup, cycles - warmup,
           finished - warmed);

    if (errors == 0) {
        printf("PASS soak_cycles_all_succeed\n");
        passed++;
    } else {
        printf("FAIL soak_cycles_all_succeed (%ld of %ld cycles failed)\n", errors, cycles);
        failed++;
    }
    if (rss_after_warmup > 0 && rss_end > 0 && rss_end - rss_after_warmup < MAX_RSS_GROWTH_KIB) {
        printf("PASS soak_cycles_rss_growth\n");
        passed++;
    } else {
        printf("FAIL soak_cycles_rss_growth (grew %ld KiB, limit %d KiB)\n", rss_end - rss_after_warmup,
               MAX_RSS_GROWTH_KIB);
        failed++;
    }
    printf("%u passed, %u failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

struct worker {
    pthread_t thread;
    long index;
    long connections;
    long succeeded;
    struct cycle_error first_error;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct cycle_error error = {""};
    for (long i = 0; i < w->connections; i++) {
        /* Distinct values per thread and connection show that no result crossed over. */
        if (run_cycle(w->index * 100000 + i, &error))
            w->succeeded++;
        else if (w->first_error.text[0] == '\0')
            w->first_error = error;
    }
    return NULL;
}

static int soak_threads(long threads, long per_thread)
{
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (workers == NULL)
        return 2;
    double started = now_seconds();
    for (long t = 0; t < threads; t++) {
        workers[t].index = t + 1;
        workers[t].connections = per_thread;
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0) {
            fprintf(stderr, "soak: pthread_create failed\n");
            return 2;
        }
    }
    long succeeded = 0;
    unsigned passed = 0, failed = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        succeeded += workers[t].succeeded;
        if (workers[t].first_error.text[0] != '\0')
            printf("    thread %ld: %ld of %ld failed, first: %s\n", t + 1, per_thread - workers[t].succeeded,
                   per_thread, workers[t].first_error.text);
    }
    double elapsed = now_seconds() - started;
    printf("    %ld threads x %ld connections: %ld succeeded in %.1f s (%.1f connections/s)\n", threads, per_thread,
           succeeded, elapsed, (double)succeeded / elapsed);
    if (succeeded == threads * per_thread) {
        printf("PASS soak_threads_all_succeed\n");
        passed++;
    } else {
        printf("FAIL soak_threads_all_succeed (%ld of %ld failed)\n", threads * per_thread - succeeded,
               threads * per_thread);
        failed++;
    }
    free(workers);
    printf("%u passed, %u failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "cycles") == 0) {
        long cycles = atol(argv[2]), warmup = atol(argv[3]);
        if (cycles > 0 && warmup > 0 && warmup < cycles)
            return soak_cycles(cycles, warmup);
    }
    if (argc == 4 && strcmp(argv[1], "threads") == 0) {
        long threads = atol(argv[2]), per_thread = atol(argv[3]);
        if (threads > 0 && per_thread > 0)
            return soak_threads(threads, per_thread);
    }
    if (argc == 3 && strcmp(argv[1], "repeat") == 0 && atol(argv[2]) > 0)
        return soak_repeat(atol(argv[2]));
    fprintf(stderr, "usage: soak cycles N WARMUP | soak threads T C | soak repeat N\n");
    return 2;
}
