/*
 * No usable Kerberos credentials: "require" fails and "prefer" falls back,
 * and neither sends anything. A socketpair replaces the server, so the
 * test receives every byte the client sends. The ccache parameter
 * selects a cache per connection, whatever KRB5CCNAME contains.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

static void make_socketpair(int pair[2])
{
    REQUIRE_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
}

static void check_require_fails(const char *conninfo, const char *minor_fragment)
{
    int pair[2];
    make_socketpair(pair);
    pggss_conn *gss = new_gss_conn(conninfo, pair[0]);

    printf("case \"%s\", KRB5CCNAME=%s\n", conninfo, getenv("KRB5CCNAME"));
    CHECK_INT(pggss_conn_connect_poll(gss), PGGSS_POLLING_STATUS_FAILED);
    CHECK_INT(pggss_conn_last_result(gss), PGGSS_RESULT_NO_CREDENTIALS);
    CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_FAILED);
    const char *message = pggss_conn_error_message(gss);
    CHECK_PREFIX(message, "gssencmode is \"require\", but there are no usable Kerberos credentials");
    CHECK_CONTAINS(message, "No credentials were supplied, or the credentials were unavailable or inaccessible");
    CHECK_CONTAINS(message, minor_fragment);
    printf("  message: %s\n", message);
    CHECK(socket_is_empty(pair[1]));

    pggss_conn_free(gss);
    close(pair[0]);
    close(pair[1]);
}

static void check_prefer_passes_plaintext(void)
{
    int pair[2];
    make_socketpair(pair);
    pggss_conn *gss = new_gss_conn("host=localhost gssencmode=prefer", pair[0]);

    CHECK_INT(pggss_conn_connect_poll(gss), PGGSS_POLLING_STATUS_OK);
    CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_NO_CREDENTIALS);
    CHECK_INT(pggss_conn_last_result(gss), PGGSS_RESULT_OK);
    CHECK(!pggss_conn_encryption_in_use(gss));
    CHECK(pggss_conn_gss_context(gss) == NULL);
    const char *message = pggss_conn_error_message(gss);
    CHECK_PREFIX(message, "no usable Kerberos credentials");
    CHECK_CONTAINS(message, "GSSENCRequest was not sent and the socket is untouched");
    CHECK(socket_is_empty(pair[1]));

    /* The connection passes bytes through unchanged in both directions. */
    CHECK_INT(pggss_conn_write(gss, "hello", 5), 5);
    char received[16] = {0};
    CHECK_INT(recv(pair[1], received, sizeof received, MSG_DONTWAIT), 5);
    CHECK_STR(received, "hello");

    CHECK_INT(send(pair[1], "world!", 6, 0), 6);
    memset(received, 0, sizeof received);
    CHECK_INT(pggss_conn_read(gss, received, sizeof received), 6);
    CHECK_STR(received, "world!");

    /* An orderly close by the peer reads as 0. */
    CHECK_INT(shutdown(pair[1], SHUT_WR), 0);
    CHECK_INT(pggss_conn_read(gss, received, sizeof received), 0);

    pggss_conn_free(gss);
    close(pair[0]);
    close(pair[1]);
}

/*
 * Under "prefer" without credentials the StartupMessage goes out in
 * plaintext, which pg_hba.conf rejects for TCP: only hostgssenc lines match.
 */
static void check_prefer_against_server(void)
{
    int fd = connect_tcp_or_exit();
    pggss_conn *gss = new_gss_conn("host=localhost gssencmode=prefer", fd);
    pgw_conn w;

    CHECK_INT(pggss_conn_connect_poll(gss), PGGSS_POLLING_STATUS_OK);
    CHECK_INT(pggss_conn_outcome(gss), PGGSS_OUTCOME_NO_CREDENTIALS);
    REQUIRE_INT(pgw_init(&w, gss, fd), 0);
    CHECK_INT(pgw_startup(&w, fixture_env("PGUSER"), fixture_env("PGDATABASE"), "no_credentials"), PGW_FAILED);
    CHECK_STR(w.sqlstate, "28000");
    CHECK_CONTAINS(w.error, "no pg_hba.conf entry for host \"127.0.0.1\"");
    CHECK_CONTAINS(w.error, "no encryption");
    printf("  server: %s\n", w.error);

    pgw_destroy(&w);
    pggss_conn_free(gss);
    close(fd);
}

int main(void)
{
    char real_cache[512];
    char missing_cache[512];
    char conninfo[1024];

    snprintf(real_cache, sizeof real_cache, "%s", fixture_env("KRB5CCNAME"));
    snprintf(missing_cache, sizeof missing_cache, "FILE:%s/no-such-ccache", fixture_env("PGGSS_FIXTURE_DIR"));

    /* A ccache parameter naming a missing cache wins over a valid KRB5CCNAME. */
    snprintf(conninfo, sizeof conninfo, "host=localhost gssencmode=require ccache=%s", missing_cache);
    check_require_fails(conninfo, "No credentials cache found");

    /* From here on, the default cache does not exist. */
    REQUIRE_INT(setenv("KRB5CCNAME", missing_cache, 1), 0);
    char default_fragment[600];
    snprintf(default_fragment, sizeof default_fragment, "No Kerberos credentials available (default cache: %s)",
             missing_cache);
    check_require_fails("host=localhost gssencmode=require", default_fragment);
    check_prefer_passes_plaintext();
    check_prefer_against_server();

    /* The ccache parameter finds the fixture's ticket although KRB5CCNAME points elsewhere. */
    session s;
    snprintf(conninfo, sizeof conninfo, "ccache=%s", real_cache);
    open_encrypted_session(&s, conninfo);
    check_pg_stat_gssapi(&s.w, true);
    close_session(&s);

    /* Choosing a cache for one connection leaves the default of the next one alone. */
    check_require_fails("host=localhost gssencmode=require", default_fragment);

    return test_finish();
}
