/*
 * pqclients: libpq drivers for the pggss-proxy tests.
 *
 *   pqclients concurrent COUNT CONNINFO
 *       Opens COUNT connections at once, one thread each. When all are
 *       open, one of them counts the server backends that carry this
 *       run's application_name, which must equal COUNT, so all of them
 *       are open at the same moment. Then each runs SELECT with a value
 *       unique to it and checks the echo. Prints
 *       "connected=N encrypted=N concurrent_backends=N echoed=N".
 *
 *   pqclients cancel CONNINFO
 *       Starts SELECT pg_sleep(30), cancels it with PQcancel, and checks
 *       that the query fails with SQLSTATE 57014 within 10 s. Prints
 *       "cancelled sqlstate=57014 seconds=S".
 *
 * CONNINFO is a libpq connection string, to which the drivers add application_name.
 * Exit status 0 when every check passed, 1 otherwise, 2 for usage errors.
 */

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct client {
    pthread_t thread;
    int index;
    const char *conninfo;
    PGconn *conn;
    int connected;
    int encrypted;
    int echoed;
    char error[512];
};

static pthread_barrier_t all_connected;
static pthread_barrier_t backends_counted;
static char application_name[64];
static long concurrent_backends = -1;

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static PGconn *open_connection(const char *conninfo)
{
    const char *keywords[] = {"dbname", "application_name", NULL};
    const char *values[] = {conninfo, application_name, NULL};
    /* expand_dbname=1 reads the first dbname value as a full connection string. */
    return PQconnectdbParams(keywords, values, 1);
}

/* Runs a one-value query. Returns a copy of the value (free it), or NULL after an error. */
static char *query_value(PGconn *conn, const char *sql, char *error, size_t error_size)
{
    PGresult *result = PQexec(conn, sql);
    char *value = NULL;
    if (PQresultStatus(result) != PGRES_TUPLES_OK || PQntuples(result) != 1 || PQnfields(result) != 1) {
        snprintf(error, error_size, "%s: %s", sql, PQresultErrorMessage(result));
    } else {
        value = strdup(PQgetvalue(result, 0, 0));
    }
    PQclear(result);
    return value;
}

static void *run_client(void *argument)
{
    struct client *client = argument;
    client->conn = open_connection(client->conninfo);
    if (PQstatus(client->conn) == CONNECTION_OK) {
        client->connected = 1;
        client->encrypted = PQgssEncInUse(client->conn);
    } else {
        snprintf(client->error, sizeof(client->error), "connect: %s", PQerrorMessage(client->conn));
    }

    pthread_barrier_wait(&all_connected);
    if (client->index == 0 && client->connected) {
        char sql[256];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'",
                 application_name);
        char *value = query_value(client->conn, sql, client->error, sizeof(client->error));
        if (value != NULL) {
            concurrent_backends = strtol(value, NULL, 10);
            free(value);
        }
    }
    pthread_barrier_wait(&backends_counted);

    if (client->connected) {
        char expected[64];
        char sql[128];
        snprintf(expected, sizeof(expected), "echo-%d-%ld", client->index, (long)getpid());
        snprintf(sql, sizeof(sql), "SELECT '%s'::text", expected);
        char *value = query_value(client->conn, sql, client->error, sizeof(client->error));
        if (value != NULL && strcmp(value, expected) == 0)
            client->echoed = 1;
        else if (value != NULL)
            snprintf(client->error, sizeof(client->error), "echo: expected %s, received %s", expected, value);
        free(value);
    }
    PQfinish(client->conn);
    return NULL;
}

static int run_concurrent(int count, const char *conninfo)
{
    struct client *clients = calloc((size_t)count, sizeof(*clients));
    if (clients == NULL)
        return 1;
    snprintf(application_name, sizeof(application_name), "pqclients-%ld", (long)getpid());
    pthread_barrier_init(&all_connected, NULL, (unsigned)count);
    pthread_barrier_init(&backends_counted, NULL, (unsigned)count);

    for (int i = 0; i < count; i++) {
        clients[i].index = i;
        clients[i].conninfo = conninfo;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setstacksize(&attributes, 512 * 1024);
        if (pthread_create(&clients[i].thread, &attributes, run_client, &clients[i]) != 0) {
            fprintf(stderr, "pqclients: could not start thread %d\n", i);
            exit(1);
        }
        pthread_attr_destroy(&attributes);
    }

    int connected = 0;
    int encrypted = 0;
    int echoed = 0;
    int reported = 0;
    for (int i = 0; i < count; i++) {
        pthread_join(clients[i].thread, NULL);
        connected += clients[i].connected;
        encrypted += clients[i].encrypted;
        echoed += clients[i].echoed;
        if (clients[i].error[0] != 0 && reported++ < 5)
            fprintf(stderr, "pqclients: client %d: %s\n", i, clients[i].error);
    }
    printf("connected=%d encrypted=%d concurrent_backends=%ld echoed=%d\n", connected, encrypted,
           concurrent_backends, echoed);
    free(clients);
    return connected == count && encrypted == count && concurrent_backends == count && echoed == count ? 0 : 1;
}

static int run_cancel(const char *conninfo)
{
    snprintf(application_name, sizeof(application_name), "pqclients-cancel-%ld", (long)getpid());
    PGconn *conn = open_connection(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "pqclients: connect: %s", PQerrorMessage(conn));
        return 1;
    }
    if (!PQsendQuery(conn, "SELECT pg_sleep(30)")) {
        fprintf(stderr, "pqclients: PQsendQuery: %s", PQerrorMessage(conn));
        return 1;
    }
    double started = now_seconds();
    /* Give the server time to start the query, so that the cancel interrupts it rather than racing it. */
    usleep(500 * 1000);

    char error[256];
    PGcancel *cancel = PQgetCancel(conn);
    if (cancel == NULL || !PQcancel(cancel, error, sizeof(error))) {
        fprintf(stderr, "pqclients: PQcancel failed: %s\n", cancel == NULL ? "no cancel handle" : error);
        return 1;
    }
    PQfreeCancel(cancel);

    PGresult *result = PQgetResult(conn);
    double seconds = now_seconds() - started;
    const char *sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    int ok = PQresultStatus(result) == PGRES_FATAL_ERROR && sqlstate != NULL && strcmp(sqlstate, "57014") == 0 &&
             seconds < 10.0;
    printf("cancelled sqlstate=%s seconds=%.1f\n", sqlstate != NULL ? sqlstate : "-", seconds);
    PQclear(result);
    while ((result = PQgetResult(conn)) != NULL)
        PQclear(result);
    PQfinish(conn);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "concurrent") == 0) {
        int count = atoi(argv[2]);
        if (count < 1) {
            fprintf(stderr, "pqclients: COUNT must be a positive number\n");
            return 2;
        }
        return run_concurrent(count, argv[3]);
    }
    if (argc == 3 && strcmp(argv[1], "cancel") == 0)
        return run_cancel(argv[2]);
    fprintf(stderr, "usage: pqclients concurrent COUNT CONNINFO | pqclients cancel CONNINFO\n");
    return 2;
}
