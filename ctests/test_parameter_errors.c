/*
 * Parameters: invalid values, unknown keys, malformed connection strings,
 * the postgresql:// URI form, the PG* environment variables and their
 * precedence, and calls made in the wrong state.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

static pggss_conn *new_bare_conn(void)
{
    pggss_conn *conn = NULL;
    REQUIRE_INT(pggss_conn_new(&conn), PGGSS_RESULT_OK);
    return conn;
}

static void check_invalid_values(void)
{
    pggss_conn *conn = new_bare_conn();

    CHECK_INT(pggss_conn_set_param(conn, "gssencmode", "maybe"), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_STR(pggss_conn_error_message(conn),
              "invalid value for parameter \"gssencmode\": \"maybe\"; expected \"disable\", \"prefer\" or \"require\"");

    CHECK_INT(pggss_conn_set_param(conn, "gssdelegation", "2"), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_STR(pggss_conn_error_message(conn), "invalid value for parameter \"gssdelegation\": \"2\"; expected \"0\" or \"1\"");

    CHECK_INT(pggss_conn_set_param(conn, "sslmode", "require"), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_PREFIX(pggss_conn_error_message(conn), "unknown parameter \"sslmode\"");

    /* A valid call after the failures succeeds. */
    CHECK_INT(pggss_conn_set_param(conn, "gssencmode", "require"), PGGSS_RESULT_OK);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_OK);

    CHECK_INT(pggss_conn_set_fd(conn, -1), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_CONTAINS(pggss_conn_error_message(conn), "invalid file descriptor -1");

    /* "caf\xe9" is Latin-1, not UTF-8. */
    CHECK_INT(pggss_conn_set_param(conn, "host", "caf\xe9"), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_STR(pggss_conn_error_message(conn), "parameter value is not valid UTF-8");
    CHECK_INT(pggss_conn_set_conninfo(conn, "host=caf\xe9"), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_STR(pggss_conn_error_message(conn), "connection string is not valid UTF-8");
    pggss_conn_free(conn);
}

static void check_malformed_conninfo(void)
{
    pggss_conn *conn = new_bare_conn();

    /* Keys that pggssenc does not use are ignored in a connection string. */
    CHECK_INT(pggss_conn_set_conninfo(conn, "host=localhost dbname=tester user=tester sslmode=disable "
                                            "application_name='a b' connect_timeout=5"),
              PGGSS_RESULT_OK);

    CHECK_INT(pggss_conn_set_conninfo(conn, "host=localhost gssencmode"), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_STR(pggss_conn_error_message(conn), "invalid connection string: missing \"=\" after \"gssencmode\"");
    CHECK_INT(pggss_conn_set_conninfo(conn, "host='localhost"), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_STR(pggss_conn_error_message(conn), "invalid connection string: unterminated quoted value for \"host\"");
    CHECK_INT(pggss_conn_set_conninfo(conn, "gssencmode=sometimes"), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_PREFIX(pggss_conn_error_message(conn), "invalid value for parameter \"gssencmode\": \"sometimes\"");
    CHECK_INT(pggss_conn_set_conninfo(conn, "postgresql://localhost/tester?gssencmode=%zz"),
              PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_CONTAINS(pggss_conn_error_message(conn), "invalid percent-encoded token in \"%zz\"");
    pggss_conn_free(conn);
}

/* Negotiates over the Unix socket, where the server responds 'N', and checks the result. */
static void check_unix_negotiation(pggss_conn *conn, int fd, int expected_status, pggss_outcome expected_outcome,
                                   pggss_result expected_result)
{
    REQUIRE_INT(pggss_conn_set_fd(conn, fd), PGGSS_RESULT_OK);
    CHECK_INT(pggss_conn_connect_poll(conn), expected_status);
    CHECK_INT(pggss_conn_outcome(conn), expected_outcome);
    CHECK_INT(pggss_conn_last_result(conn), expected_result);
}

/*
 * After a rejected connection string the connection refuses to connect, as
 * libpq does: negotiating with what was set before (or the defaults) could
 * turn gssencmode=require into plaintext. Nothing reaches the socket.
 */
static void check_rejected_parameter_blocks_connect(void)
{
    int pair[2];
    REQUIRE_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    pggss_conn *conn = new_bare_conn();

    CHECK_INT(pggss_conn_set_conninfo(conn, "host=localhost gssencmode=disable"), PGGSS_RESULT_OK);
    CHECK_INT(pggss_conn_set_conninfo(conn, "gssencmode=requir"), PGGSS_RESULT_INVALID_PARAMETER);
    REQUIRE_INT(pggss_conn_set_fd(conn, pair[0]), PGGSS_RESULT_OK);
    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_outcome(conn), PGGSS_OUTCOME_FAILED);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_STR(pggss_conn_error_message(conn),
              "not connecting because a parameter was rejected: invalid value for parameter \"gssencmode\": "
              "\"requir\"; expected \"disable\", \"prefer\" or \"require\"");

    char byte;
    CHECK_INT(recv(pair[1], &byte, 1, MSG_DONTWAIT), -1);
    CHECK_INT(errno, EAGAIN);

    pggss_conn_free(conn);
    close(pair[0]);
    close(pair[1]);
}

/* The later of set_param and set_conninfo wins. */
static void check_last_setting_wins(void)
{
    int fd = connect_unix_or_exit();
    pggss_conn *conn = new_bare_conn();

    CHECK_INT(pggss_conn_set_param(conn, "gssencmode", "require"), PGGSS_RESULT_OK);
    CHECK_INT(pggss_conn_set_conninfo(conn, "host=localhost gssencmode=prefer"), PGGSS_RESULT_OK);
    check_unix_negotiation(conn, fd, PGGSS_POLLING_STATUS_OK, PGGSS_OUTCOME_SERVER_DECLINED, PGGSS_RESULT_OK);

    pggss_conn_free(conn);
    close(fd);
}

static void check_uri(void)
{
    char uri[512];
    const char *port = fixture_env("PGPORT");

    /* A real connection configured by a URI, with a percent-encoded "q" in the value. */
    session s;
    s.fd = connect_tcp_or_exit();
    snprintf(uri, sizeof uri, "postgresql://localhost:%s/tester?gssencmode=re%%71uire&application_name=uri", port);
    s.gss = new_gss_conn(uri, s.fd);
    REQUIRE_INT(pgw_init(&s.w, s.gss, s.fd), 0);
    REQUIRE_PGW(&s.w, pgw_negotiate(&s.w, NULL));
    CHECK_INT(pggss_conn_outcome(s.gss), PGGSS_OUTCOME_ENCRYPTED);
    REQUIRE_PGW(&s.w, pgw_startup(&s.w, fixture_env("PGUSER"), fixture_env("PGDATABASE"), "parameter_errors"));
    check_pg_stat_gssapi(&s.w, true);
    close_session(&s);

    /* The URI's query parameters reach the library: a wrong service name fails. */
    int fd = connect_tcp_or_exit();
    snprintf(uri, sizeof uri, "postgresql://localhost:%s/tester?gssencmode=require&krbsrvname=nosuchsvc", port);
    pggss_conn *conn = new_gss_conn(uri, fd);
    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_GSS_FAILURE);
    CHECK_CONTAINS(pggss_conn_error_message(conn), "nosuchsvc/localhost@");
    pggss_conn_free(conn);
    close(fd);
}

static void check_environment(void)
{
    int fd;
    pggss_conn *conn;

    /* An explicit gssencmode wins over PGGSSENCMODE. */
    setenv("PGGSSENCMODE", "require", 1);
    fd = connect_unix_or_exit();
    conn = new_gss_conn("host=localhost gssencmode=prefer", fd);
    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_OK);
    CHECK_INT(pggss_conn_outcome(conn), PGGSS_OUTCOME_SERVER_DECLINED);
    pggss_conn_free(conn);
    close(fd);

    /* Without an explicit value, PGGSSENCMODE applies. */
    fd = connect_unix_or_exit();
    conn = new_gss_conn("host=localhost", fd);
    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_outcome(conn), PGGSS_OUTCOME_FAILED);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_SERVER_DECLINED);
    pggss_conn_free(conn);
    close(fd);

    setenv("PGGSSENCMODE", "disable", 1);
    fd = connect_unix_or_exit();
    conn = new_gss_conn("host=localhost", fd);
    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_OK);
    CHECK_INT(pggss_conn_outcome(conn), PGGSS_OUTCOME_DISABLED);
    CHECK(socket_is_empty(fd));
    pggss_conn_free(conn);
    close(fd);

    /* An invalid environment value fails negotiation, before anything is sent. */
    int pair[2];
    setenv("PGGSSENCMODE", "always", 1);
    REQUIRE_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    conn = new_gss_conn("host=localhost", pair[0]);
    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_INVALID_PARAMETER);
    CHECK_STR(pggss_conn_error_message(conn),
              "environment variable PGGSSENCMODE: invalid value for parameter \"gssencmode\": \"always\"; "
              "expected \"disable\", \"prefer\" or \"require\"");
    CHECK(socket_is_empty(pair[1]));
    pggss_conn_free(conn);
    close(pair[0]);
    close(pair[1]);
    unsetenv("PGGSSENCMODE");

    /* PGHOST supplies the host. */
    session s;
    s.fd = connect_tcp_or_exit();
    s.gss = new_gss_conn("gssencmode=require", s.fd);
    REQUIRE_INT(pgw_init(&s.w, s.gss, s.fd), 0);
    CHECK_PGW(&s.w, pgw_negotiate(&s.w, NULL));
    CHECK_INT(pggss_conn_outcome(s.gss), PGGSS_OUTCOME_ENCRYPTED);
    s.w.broken = 1;
    close_session(&s);

    /* Without host and PGHOST there is no target name. */
    char saved_host[256];
    snprintf(saved_host, sizeof saved_host, "%s", fixture_env("PGHOST"));
    unsetenv("PGHOST");
    REQUIRE_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    conn = new_gss_conn("gssencmode=require", pair[0]);
    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_HOST_MISSING);
    CHECK_PREFIX(pggss_conn_error_message(conn), "host is not set");
    CHECK(socket_is_empty(pair[1]));
    pggss_conn_free(conn);
    close(pair[0]);
    close(pair[1]);
    setenv("PGHOST", saved_host, 1);
}

static void check_state_errors(void)
{
    int pair[2];
    char buffer[16];
    REQUIRE_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    REQUIRE_INT(pgw_set_nonblocking(pair[0], 1), 0);
    pggss_conn *conn = new_gss_conn("host=localhost gssencmode=require", pair[0]);

    /* Reads and writes wait for negotiation. */
    errno = 0;
    CHECK_INT(pggss_conn_read(conn, buffer, sizeof buffer), -1);
    CHECK_INT(errno, EINVAL);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_INVALID_STATE);
    CHECK_CONTAINS(pggss_conn_error_message(conn), "negotiation has not finished");
    errno = 0;
    CHECK_INT(pggss_conn_write(conn, "x", 1), -1);
    CHECK_INT(errno, EINVAL);
    CHECK(socket_is_empty(pair[1]));

    /* Nothing arrives on the socketpair, so negotiation waits for the response to GSSENCRequest. */
    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_READING);
    char request[16];
    CHECK_INT(recv(pair[1], request, sizeof request, MSG_DONTWAIT), 8);
    /* GSSENCRequest: length 8, code 80877104 (0x04d21630). */
    CHECK_BYTES(request, 8, "\x00\x00\x00\x08\x04\xd2\x16\x30", 8);

    /* Parameters and transport are fixed once negotiation has started. */
    CHECK_INT(pggss_conn_set_param(conn, "gssencmode", "prefer"), PGGSS_RESULT_INVALID_STATE);
    CHECK_CONTAINS(pggss_conn_error_message(conn), "cannot change after negotiation has started");
    CHECK_INT(pggss_conn_set_conninfo(conn, "gssencmode=prefer"), PGGSS_RESULT_INVALID_STATE);
    CHECK_INT(pggss_conn_set_fd(conn, pair[0]), PGGSS_RESULT_INVALID_STATE);
    CHECK_INT(pggss_conn_outcome(conn), PGGSS_OUTCOME_PENDING);

    /* A response other than 'G', 'N' or 'E' fails negotiation. */
    CHECK_INT(send(pair[1], "X", 1, 0), 1);
    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_last_result(conn), PGGSS_RESULT_UNEXPECTED_RESPONSE);
    CHECK_CONTAINS(pggss_conn_error_message(conn), "expected 'G', 'N' or 'E'");

    pggss_conn_free(conn);
    close(pair[0]);
    close(pair[1]);
}

/* With gssencmode=disable the StartupMessage goes out in plaintext, which pg_hba.conf rejects for TCP. */
static void check_disable_over_tcp(void)
{
    int fd = connect_tcp_or_exit();
    pggss_conn *conn = new_gss_conn("host=localhost gssencmode=disable", fd);
    pgw_conn w;

    CHECK_INT(pggss_conn_connect_poll(conn), PGGSS_POLLING_STATUS_OK);
    CHECK_INT(pggss_conn_outcome(conn), PGGSS_OUTCOME_DISABLED);
    REQUIRE_INT(pgw_init(&w, conn, fd), 0);
    CHECK_INT(pgw_startup(&w, fixture_env("PGUSER"), fixture_env("PGDATABASE"), "parameter_errors"), PGW_FAILED);
    CHECK_STR(w.sqlstate, "28000");
    CHECK_CONTAINS(w.error, "no encryption");

    pgw_destroy(&w);
    pggss_conn_free(conn);
    close(fd);
}

int main(void)
{
    unsetenv("PGGSSENCMODE");
    unsetenv("PGKRBSRVNAME");

    check_invalid_values();
    check_malformed_conninfo();
    check_rejected_parameter_blocks_connect();
    check_last_setting_wins();
    check_uri();
    check_environment();
    check_state_errors();
    check_disable_over_tcp();
    return test_finish();
}
