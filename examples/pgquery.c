/*
 * pgquery: runs SQL over a GSSAPI-encrypted PostgreSQL connection made
 * with pggssenc, and prints the rows like `psql -A` (unaligned, columns
 * separated by '|', a header line and a row-count footer).
 *
 *   pgquery [-h host] [-a hostaddr] [-p port] [-d dbname] [-U user]
 *           [-c conninfo] SQL...
 *
 * The protocol messages come from ../ctests/pgwire.c, which sends and
 * receives them through pggss_conn_write and pggss_conn_read.
 */

#define _POSIX_C_SOURCE 200809L

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pggssenc.h"
#include "pgwire.h"

typedef struct {
    const char *host;
    const char *hostaddr;
    const char *port;
    const char *dbname;
    const char *user;
    const char *conninfo;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pgquery [-h host] [-a hostaddr] [-p port] [-d dbname] [-U user] [-c conninfo] SQL...\n"
            "\n"
            "Runs each SQL string over a GSSAPI-encrypted connection and prints the rows\n"
            "unaligned, with '|' between columns.\n"
            "\n"
            "  -h host      server host name; the Kerberos service is krbsrvname/host\n"
            "               (default: PGHOST)\n"
            "  -a hostaddr  numeric address to connect to instead of resolving host\n"
            "               (default: PGHOSTADDR)\n"
            "  -p port      TCP port (default: PGPORT, else 5432)\n"
            "  -d dbname    database (default: PGDATABASE, else the user name)\n"
            "  -U user      user name (default: PGUSER, else the login name)\n"
            "  -c conninfo  libpq connection string applied after host=HOST and\n"
            "               gssencmode=require, for example \"gssencmode=prefer\" or\n"
            "               \"krbsrvname=postgres gssdelegation=1\"; only host, krbsrvname,\n"
            "               gssencmode, gssdelegation and ccache are used\n");
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *value = getenv(name);
    return value != NULL && value[0] != '\0' ? value : fallback;
}

static int parse_options(int argc, char **argv, options *opts)
{
    opts->host = env_or("PGHOST", NULL);
    opts->hostaddr = env_or("PGHOSTADDR", NULL);
    opts->port = env_or("PGPORT", "5432");
    opts->user = env_or("PGUSER", NULL);
    opts->dbname = env_or("PGDATABASE", NULL);
    opts->conninfo = NULL;

    int option;
    while ((option = getopt(argc, argv, "h:a:p:d:U:c:")) != -1) {
        switch (option) {
        case 'h':
            opts->host = optarg;
            break;
        case 'a':
            opts->hostaddr = optarg;
            break;
        case 'p':
            opts->port = optarg;
            break;
        case 'd':
            opts->dbname = optarg;
            break;
        case 'U':
            opts->user = optarg;
            break;
        case 'c':
            opts->conninfo = optarg;
            break;
        default:
            usage(stderr);
            return -1;
        }
    }

    if (optind >= argc) {
        fprintf(stderr, "pgquery: no SQL given\n");
        usage(stderr);
        return -1;
    }
    if (opts->host == NULL) {
        fprintf(stderr, "pgquery: no host: give -h HOST or set PGHOST; the Kerberos service name needs it\n");
        return -1;
    }
    if (opts->user == NULL) {
        struct passwd *account = getpwuid(getuid());
        if (account == NULL) {
            fprintf(stderr, "pgquery: no user: give -U USER or set PGUSER\n");
            return -1;
        }
        opts->user = account->pw_name;
    }
    if (opts->dbname == NULL) {
        opts->dbname = opts->user;
    }
    return 0;
}

/* Prints the library's error for a failed configuration call and returns -1. */
static int report_setting_error(pggss_conn *gss, const char *what)
{
    fprintf(stderr, "pgquery: invalid %s: %s\n", what, pggss_conn_error_message(gss));
    return -1;
}

static int configure(pggss_conn *gss, const options *opts, int fd)
{
    if (pggss_conn_set_param(gss, "host", opts->host) != PGGSS_RESULT_OK) {
        return report_setting_error(gss, "host");
    }
    if (pggss_conn_set_param(gss, "gssencmode", "require") != PGGSS_RESULT_OK) {
        return report_setting_error(gss, "gssencmode");
    }
    if (opts->conninfo != NULL && pggss_conn_set_conninfo(gss, opts->conninfo) != PGGSS_RESULT_OK) {
        return report_setting_error(gss, "connection string");
    }
    if (pggss_conn_set_fd(gss, fd) != PGGSS_RESULT_OK) {
        return report_setting_error(gss, "socket");
    }
    return 0;
}

/* Prints one line about the connection's protection to standard error. */
static void describe_connection(pggss_conn *gss)
{
    if (!pggss_conn_encryption_in_use(gss)) {
        fprintf(stderr, "pggssenc: GSSAPI encryption not in use: %s\n", pggss_conn_error_message(gss));
        return;
    }

    char principal[512];
    size_t length = 0;
    if (pggss_conn_client_principal(gss, principal, sizeof principal, &length) != PGGSS_RESULT_OK) {
        snprintf(principal, sizeof principal, "(unknown: %s)", pggss_conn_error_message(gss));
    }
    fprintf(stderr, "pggssenc: GSSAPI encryption in use, client principal %s, up to %zu plaintext bytes per packet\n",
            principal, pggss_conn_max_plaintext(gss));
}

/* Output state of one query string, which may hold several statements. */
typedef struct {
    bool in_result_set;
    size_t rows;
} printer;

static int print_columns(void *userdata, int column_count, const char *const *names)
{
    printer *p = userdata;
    for (int i = 0; i < column_count; i++) {
        fputs(names[i], stdout);
        fputc(i + 1 < column_count ? '|' : '\n', stdout);
    }
    p->in_result_set = true;
    p->rows = 0;
    return 0;
}

static int print_row(void *userdata, int column_count, const char *const *values, const size_t *lengths)
{
    printer *p = userdata;
    for (int i = 0; i < column_count; i++) {
        /* psql prints SQL NULL as an empty string. */
        if (values[i] != NULL) {
            fwrite(values[i], 1, lengths[i], stdout);
        }
        fputc(i + 1 < column_count ? '|' : '\n', stdout);
    }
    p->rows++;
    return 0;
}

static int print_complete(void *userdata, const char *tag)
{
    printer *p = userdata;
    if (p->in_result_set) {
        printf("(%zu %s)\n", p->rows, p->rows == 1 ? "row" : "rows");
        p->in_result_set = false;
    } else {
        /* A statement without a result set, such as CREATE TABLE, prints its command tag, as psql does. */
        printf("%s\n", tag);
    }
    return 0;
}

static int run_queries(pgw_conn *w, char **queries, int count)
{
    for (int i = 0; i < count; i++) {
        printer p = {false, 0};
        pgw_query_handlers handlers = {print_columns, print_row, print_complete, &p};

        pgw_status status = pgw_query(w, queries[i], &handlers);
        fflush(stdout);
        if (status == PGW_SERVER_ERROR) {
            fprintf(stderr, "pgquery: %s\n", w->error);
            return -1;
        }
        if (status != PGW_OK) {
            fprintf(stderr, "pgquery: query failed: %s\n", w->error);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    options opts;
    if (parse_options(argc, argv, &opts) != 0) {
        return 1;
    }

    char error[512];
    const char *address = opts.hostaddr != NULL ? opts.hostaddr : opts.host;
    int fd = pgw_connect_tcp(address, opts.port, error, sizeof error);
    if (fd < 0) {
        fprintf(stderr, "pgquery: %s\n", error);
        return 1;
    }

    int exit_status = 1;
    pggss_conn *gss = NULL;
    pgw_conn w;
    bool wire_ready = false;

    if (pggss_conn_new(&gss) != PGGSS_RESULT_OK) {
        fprintf(stderr, "pgquery: pggss_conn_new failed\n");
        goto done;
    }
    if (configure(gss, &opts, fd) != 0) {
        goto done;
    }
    if (pgw_init(&w, gss, fd) != 0) {
        fprintf(stderr, "pgquery: out of memory\n");
        goto done;
    }
    wire_ready = true;

    if (pgw_negotiate(&w, NULL) != PGW_OK) {
        fprintf(stderr, "pgquery: %s\n", w.error);
        goto done;
    }
    describe_connection(gss);

    if (pgw_startup(&w, opts.user, opts.dbname, "pgquery") != PGW_OK) {
        fprintf(stderr, "pgquery: could not start the session: %s\n", w.error);
        goto done;
    }
    if (run_queries(&w, argv + optind, argc - optind) == 0) {
        exit_status = 0;
    }
    if (pgw_terminate(&w) != PGW_OK && exit_status == 0) {
        fprintf(stderr, "pgquery: could not send Terminate: %s\n", w.error);
        exit_status = 1;
    }

done:
    if (wire_ready) {
        pgw_destroy(&w);
    }
    pggss_conn_free(gss);
    close(fd);
    return exit_status;
}
