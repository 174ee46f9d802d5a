/*
 * Wrong GSSAPI target names. A service the KDC does not know fails in
 * gss_init_sec_context on the client. A service that the KDC has, but
 * whose key the PostgreSQL server lacks (other/localhost), fails on the
 * server, which logs the error and closes the connection without a
 * response.
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* Connects over TCP with `conninfo` and checks that negotiation fails with `expected_result`. */
static void check_fails(const char *conninfo, pggss_result expected_result, const char *fragment)
{
    int fd = connect_tcp_or_exit();
    pggss_conn *gss = new_gss_conn(conninfo, fd);

    printf("case \"%s\"\n", conninfo);
    CHECK_INT(pggss_conn_connect_poll(gss), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_last_result(gss), expected_result);
    CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_FAILED);
    CHECK(!pggss_conn_encryption_in_use(gss));
    CHECK_CONTAINS(pggss_conn_error_message(gss), fragment);
    printf("  message: %s\n", pggss_conn_error_message(gss));

    pggss_conn_free(gss);
    close(fd);
}

static void check_unknown_service(void)
{
    char fragment[256];

    snprintf(fragment, sizeof fragment, "Server nosuchsvc/localhost@%s not found in Kerberos database",
             fixture_env("PGGSS_REALM"));
    check_fails("host=localhost gssencmode=require krbsrvname=nosuchsvc", PGGSS_RESULT_GSS_FAILURE, fragment);
    check_fails("host=localhost gssencmode=require krbsrvname=nosuchsvc", PGGSS_RESULT_GSS_FAILURE,
                "GSSAPI gss_init_sec_context failed: ");

    /* Under "prefer" a GSSAPI failure after 'G' still fails: the socket is mid-handshake. */
    check_fails("host=localhost gssencmode=prefer krbsrvname=nosuchsvc", PGGSS_RESULT_GSS_FAILURE, fragment);

    /* PGKRBSRVNAME supplies the service name when krbsrvname is not set. */
    setenv("PGKRBSRVNAME", "nosuchsvc", 1);
    check_fails("host=localhost gssencmode=require", PGGSS_RESULT_GSS_FAILURE, fragment);
    session s;
    open_encrypted_session(&s, "krbsrvname=postgres");
    check_pg_stat_gssapi(&s.w, true);
    close_session(&s);
    unsetenv("PGKRBSRVNAME");

    /* The target name uses the host as written: the KDC has postgres/localhost, not postgres/127.0.0.1. */
    snprintf(fragment, sizeof fragment, "Server postgres/127.0.0.1@%s not found in Kerberos database",
             fixture_env("PGGSS_REALM"));
    check_fails("host=127.0.0.1 gssencmode=require", PGGSS_RESULT_GSS_FAILURE, fragment);
}

/* Returns the number of lines of the server log that contain `fragment`, or -1 when it cannot be read. */
static int count_log_lines(const char *fragment)
{
    char path[512];
    char line[4096];
    int count = 0;

    snprintf(path, sizeof path, "%s/postgresql.log", fixture_env("PGGSS_FIXTURE_DIR"));
    FILE *log = fopen(path, "r");
    if (log == NULL) {
        return -1;
    }
    while (fgets(line, sizeof line, log) != NULL) {
        if (strstr(line, fragment) != NULL) {
            count++;
        }
    }
    fclose(log);
    return count;
}

static void check_service_without_server_key(void)
{
    const char *server_error = "could not accept GSSAPI security context";
    char server_detail[256];
    snprintf(server_detail, sizeof server_detail, "Request ticket server other/localhost@%s not found in keytab",
             fixture_env("PGGSS_REALM"));
    int errors_before = count_log_lines(server_error);
    int details_before = count_log_lines(server_detail);

    /*
     * The ticket for other/localhost is valid, so the client sends its
     * token. gss_accept_sec_context then fails on the server, which closes
     * the connection without sending an error packet.
     */
    check_fails("host=localhost gssencmode=require krbsrvname=other", PGGSS_RESULT_UNEXPECTED_EOF,
                "server closed the connection unexpectedly while waiting for a GSSAPI handshake token");

    /* The server log gives the reason. The backend may still be writing it, so wait a little. */
    for (int i = 0; i < 50 && errors_before >= 0 && count_log_lines(server_detail) == details_before; i++) {
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    CHECK(errors_before >= 0);
    CHECK_INT(count_log_lines(server_error), errors_before + 1);
    CHECK_INT(count_log_lines(server_detail), details_before + 1);
}

int main(void)
{
    unsetenv("PGKRBSRVNAME");
    check_unknown_service();
    check_service_without_server_key();
    return test_finish();
}
