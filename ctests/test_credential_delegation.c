/*
 * gssdelegation: with a forwardable ticket (the fixture's kinit -f) and
 * gssdelegation=1 the credentials are delegated, and not otherwise. The
 * context's GSS_C_DELEG_FLAG must agree with
 * pggss_conn_credentials_delegated.
 */

#define _POSIX_C_SOURCE 200809L

#include <gssapi/gssapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static bool context_has_delegation_flag(pggss_conn *gss)
{
    OM_uint32 minor = 0;
    OM_uint32 flags = 0;
    gss_ctx_id_t context = pggss_conn_gss_context(gss);

    if (!CHECK(context != GSS_C_NO_CONTEXT)) {
        return false;
    }
    CHECK_INT(gss_inquire_context(&minor, context, NULL, NULL, NULL, NULL, &flags, NULL, NULL), GSS_S_COMPLETE);
    return (flags & GSS_C_DELEG_FLAG) != 0;
}

/* Opens an encrypted session with `extra_conninfo`, runs a query and checks delegation. */
static void check_delegation(const char *extra_conninfo, bool expect_delegated)
{
    session s;
    char value[64];

    printf("gssdelegation case: \"%s\", PGGSSDELEGATION=%s\n", extra_conninfo,
           getenv("PGGSSDELEGATION") ? getenv("PGGSSDELEGATION") : "(unset)");
    open_encrypted_session(&s, extra_conninfo);
    CHECK_INT(pggss_conn_credentials_delegated(s.gss), expect_delegated);
    CHECK_INT(context_has_delegation_flag(s.gss), expect_delegated);
    check_pg_stat_gssapi(&s.w, true);
    if (CHECK_PGW(&s.w, pgw_query_value(&s.w, "SELECT 'delegation ' || current_user", value, sizeof value))) {
        CHECK_STR(value, "delegation tester");
    }
    close_session(&s);
}

/*
 * Gets a ticket that is not forwardable into a new credential cache with
 * kinit -F from the fixture's client keytab. Writes the cache name into
 * `ccache`; returns false when kinit failed.
 */
static bool get_unforwardable_ticket(char *directory, char *ccache, size_t size)
{
    char command[1024];

    if (!CHECK(mkdtemp(directory) != NULL)) {
        return false;
    }
    snprintf(ccache, size, "FILE:%s/ccache", directory);
    snprintf(command, sizeof command, "kinit -F -k -t '%s' -c '%s' '%s'", fixture_env("PGGSS_CLIENT_KEYTAB"), ccache,
             fixture_env("PGGSS_PRINCIPAL"));
    return CHECK_INT(system(command), 0);
}

int main(void)
{
    unsetenv("PGGSSDELEGATION");
    check_delegation("gssdelegation=1", true);
    check_delegation("gssdelegation=0", false);
    /* libpq's default is 0. */
    check_delegation("", false);

    setenv("PGGSSDELEGATION", "1", 1);
    check_delegation("", true);
    check_delegation("gssdelegation=0", false);
    unsetenv("PGGSSDELEGATION");

    /* Without a forwardable ticket there is nothing to delegate, but the connection works. */
    char directory[] = "/tmp/pggss-delegation.XXXXXX";
    char ccache[256];
    char conninfo[512];
    if (get_unforwardable_ticket(directory, ccache, sizeof ccache)) {
        snprintf(conninfo, sizeof conninfo, "gssdelegation=1 ccache=%s", ccache);
        check_delegation(conninfo, false);
    }
    char cache_file[300];
    snprintf(cache_file, sizeof cache_file, "%s/ccache", directory);
    unlink(cache_file);
    rmdir(directory);

    return test_finish();
}
