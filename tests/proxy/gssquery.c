/*
 * gssquery: a minimal PostgreSQL client over the pggssenc client role, for
 * the pggss-proxy tests. It connects with gssencmode=require on a blocking
 * socket and then either runs one query and prints its rows, or starts a
 * COPY FROM STDIN and vanishes in the middle of it.
 *
 *   gssquery --port PORT [--host NAME] [--addr IP] [--user U] [--database D]
 *            [--application NAME] --sql SQL
 *   gssquery --port PORT ... --copy-abort BYTES --pause-file PATH
 *
 * --sql prints each row as tab-separated values (\N for NULL) on standard
 * output. On an ErrorResponse it prints "ERROR SQLSTATE: message" to
 * standard error and exits with status 3.
 *
 * --copy-abort runs COPY proxy_copy_abort FROM STDIN, sends BYTES bytes of
 * rows, creates PATH, waits until PATH is removed, then closes the socket
 * without CopyDone or Terminate.
 *
 * Exit status: 0 success, 1 connection or protocol failure, 2 usage, 3 SQL
 * error. "principal=..." goes to standard error after negotiation.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pggssenc.h"

/* Seconds that --copy-abort waits for its pause file to be removed. */
#define PAUSE_TIMEOUT_S 30

static pggss_conn *gss;

static void die(const char *format, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fprintf(stderr, "gssquery: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(1);
}

static void write_all(const void *data, size_t length)
{
    const uint8_t *bytes = data;
    while (length > 0) {
        ssize_t written = pggss_conn_write(gss, bytes, length);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            die("pggss_conn_write failed: %s", pggss_conn_error_message(gss));
        }
        bytes += written;
        length -= (size_t)written;
    }
}

static void read_exactly(void *data, size_t length)
{
    uint8_t *bytes = data;
    while (length > 0) {
        ssize_t count = pggss_conn_read(gss, bytes, length);
        if (count == 0)
            die("the server closed the connection");
        if (count < 0) {
            if (errno == EINTR)
                continue;
            die("pggss_conn_read failed: %s", pggss_conn_error_message(gss));
        }
        bytes += count;
        length -= (size_t)count;
    }
}

static uint32_t be32(const uint8_t *bytes)
{
    return ((uint32_t)bytes[0] << 24) | ((uint32_t)bytes[1] << 16) | ((uint32_t)bytes[2] << 8) | bytes[3];
}

static void put_be32(uint8_t *bytes, uint32_t value)
{
    bytes[0] = (uint8_t)(value >> 24);
    bytes[1] = (uint8_t)(value >> 16);
    bytes[2] = (uint8_t)(value >> 8);
    bytes[3] = (uint8_t)value;
}

/* Reads one message and returns its type. *body receives the body, allocated with malloc. */
static char read_message(uint8_t **body, uint32_t *body_length)
{
    uint8_t header[5];
    read_exactly(header, sizeof(header));
    uint32_t length = be32(header + 1);
    if (length < 4 || length > 256u * 1024 * 1024)
        die("invalid message length %u for message type '%c'", length, header[0]);
    *body_length = length - 4;
    *body = malloc(*body_length + 1);
    if (*body == NULL)
        die("out of memory");
    read_exactly(*body, *body_length);
    (*body)[*body_length] = 0;
    return (char)header[0];
}

static void send_message(char type, const void *body, size_t body_length)
{
    uint8_t header[5];
    header[0] = (uint8_t)type;
    put_be32(header + 1, (uint32_t)(body_length + 4));
    write_all(header, sizeof(header));
    if (body_length > 0)
        write_all(body, body_length);
}

/* Prints the SQLSTATE and message of an ErrorResponse body. */
static void print_error(const uint8_t *body, uint32_t length)
{
    const char *sqlstate = "";
    const char *message = "";
    uint32_t offset = 0;
    while (offset < length && body[offset] != 0) {
        char code = (char)body[offset];
        const char *value = (const char *)body + offset + 1;
        if (code == 'C')
            sqlstate = value;
        else if (code == 'M')
            message = value;
        offset += 1 + (uint32_t)strlen(value) + 1;
    }
    fprintf(stderr, "ERROR %s: %s\n", sqlstate, message);
}

static void startup(const char *user, const char *database, const char *application)
{
    uint8_t packet[1024];
    size_t length = 8;
    put_be32(packet + 4, 196608);
    const char *pairs[] = {"user", user, "database", database, "application_name", application};
    for (size_t i = 0; i < 6; i++) {
        size_t size = strlen(pairs[i]) + 1;
        if (length + size + 1 > sizeof(packet))
            die("startup parameters too long");
        memcpy(packet + length, pairs[i], size);
        length += size;
    }
    packet[length++] = 0;
    put_be32(packet, (uint32_t)length);
    write_all(packet, length);

    for (;;) {
        uint8_t *body;
        uint32_t body_length;
        char type = read_message(&body, &body_length);
        if (type == 'R' && (body_length < 4 || be32(body) != 0))
            die("the server requested authentication method %u; only AuthenticationOk is supported",
                body_length >= 4 ? be32(body) : 0);
        if (type == 'E') {
            print_error(body, body_length);
            exit(3);
        }
        free(body);
        if (type == 'Z')
            return;
    }
}

/* Runs a simple query and prints its rows. Returns 0, or 3 after an ErrorResponse. */
static int run_query(const char *sql)
{
    send_message('Q', sql, strlen(sql) + 1);
    int status = 0;
    for (;;) {
        uint8_t *body;
        uint32_t body_length;
        char type = read_message(&body, &body_length);
        if (type == 'D') {
            uint32_t offset = 2;
            unsigned columns = (unsigned)((body[0] << 8) | body[1]);
            for (unsigned column = 0; column < columns; column++) {
                if (offset + 4 > body_length)
                    die("truncated DataRow");
                uint32_t value_length = be32(body + offset);
                offset += 4;
                if (column > 0)
                    fputc('\t', stdout);
                if (value_length == 0xFFFFFFFFu) {
                    fputs("\\N", stdout);
                    continue;
                }
                if (offset + value_length > body_length)
                    die("truncated DataRow value");
                fwrite(body + offset, 1, value_length, stdout);
                offset += value_length;
            }
            fputc('\n', stdout);
        } else if (type == 'E') {
            print_error(body, body_length);
            status = 3;
        }
        free(body);
        if (type == 'Z')
            return status;
    }
}

static void copy_abort(long total, const char *pause_file)
{
    const char *sql = "COPY proxy_copy_abort FROM STDIN";
    send_message('Q', sql, strlen(sql) + 1);
    uint8_t *body;
    uint32_t body_length;
    char type = read_message(&body, &body_length);
    if (type == 'E') {
        print_error(body, body_length);
        exit(3);
    }
    if (type != 'G')
        die("expected CopyInResponse, received message type '%c'", type);
    free(body);

    char chunk[8192];
    long sent = 0;
    long row = 0;
    while (sent < total) {
        size_t used = 0;
        while (used + 64 < sizeof(chunk)) {
            used += (size_t)snprintf(chunk + used, sizeof(chunk) - used, "%ld\tpayload-%ld\n", row, row);
            row++;
        }
        send_message('d', chunk, used);
        sent += (long)used;
    }
    printf("copy sent %ld bytes\n", sent);
    fflush(stdout);

    FILE *marker = fopen(pause_file, "w");
    if (marker == NULL)
        die("could not create %s: %s", pause_file, strerror(errno));
    fclose(marker);
    struct stat info;
    time_t until = time(NULL) + PAUSE_TIMEOUT_S;
    while (stat(pause_file, &info) == 0) {
        if (time(NULL) > until)
            die("%s was not removed within %d s", pause_file, PAUSE_TIMEOUT_S);
        usleep(50 * 1000);
    }
}

int main(int argc, char **argv)
{
    const char *host = "localhost";
    const char *addr = "127.0.0.1";
    const char *port = NULL;
    const char *user = "tester";
    const char *database = "tester";
    const char *application = "gssquery";
    const char *sql = NULL;
    const char *pause_file = NULL;
    long copy_bytes = -1;
    static const struct option options[] = {
        {"host", required_argument, NULL, 'h'},     {"addr", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},     {"user", required_argument, NULL, 'U'},
        {"database", required_argument, NULL, 'd'}, {"application", required_argument, NULL, 'n'},
        {"sql", required_argument, NULL, 'c'},      {"copy-abort", required_argument, NULL, 'C'},
        {"pause-file", required_argument, NULL, 'P'}, {NULL, 0, NULL, 0},
    };
    int option;
    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (option) {
        case 'h': host = optarg; break;
        case 'a': addr = optarg; break;
        case 'p': port = optarg; break;
        case 'U': user = optarg; break;
        case 'd': database = optarg; break;
        case 'n': application = optarg; break;
        case 'c': sql = optarg; break;
        case 'C': copy_bytes = strtol(optarg, NULL, 10); break;
        case 'P': pause_file = optarg; break;
        default: return 2;
        }
    }
    if (port == NULL || (sql == NULL) == (copy_bytes < 0) || (copy_bytes >= 0 && pause_file == NULL)) {
        fprintf(stderr, "usage: gssquery --port PORT [options] (--sql SQL | --copy-abort BYTES --pause-file PATH)\n");
        return 2;
    }

    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    if (inet_pton(AF_INET, addr, &address.sin_addr) != 1)
        die("invalid IPv4 address %s", addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0)
        die("could not connect to %s:%s: %s", addr, port, strerror(errno));

    if (pggss_conn_new(&gss) != PGGSS_RESULT_OK || pggss_conn_set_param(gss, "host", host) != PGGSS_RESULT_OK ||
        pggss_conn_set_param(gss, "gssencmode", "require") != PGGSS_RESULT_OK ||
        pggss_conn_set_fd(gss, fd) != PGGSS_RESULT_OK)
        die("could not set up pggssenc: %s", pggss_conn_error_message(gss));
    int status = pggss_conn_connect_poll(gss);
    if (status != PGGSS_POLLING_STATUS_OK || pggss_conn_outcome(gss) != PGGSS_OUTCOME_ENCRYPTED)
        die("GSSAPI negotiation failed: %s", pggss_conn_error_message(gss));
    char principal[256];
    size_t principal_length;
    if (pggss_conn_client_principal(gss, principal, sizeof(principal), &principal_length) == PGGSS_RESULT_OK)
        fprintf(stderr, "principal=%s\n", principal);

    startup(user, database, application);
    if (copy_bytes >= 0) {
        copy_abort(copy_bytes, pause_file);
        /* Vanish without CopyDone or Terminate. */
        close(fd);
        pggss_conn_free(gss);
        return 0;
    }

    status = run_query(sql);
    send_message('X', NULL, 0);
    pggss_conn_free(gss);
    close(fd);
    return status;
}
