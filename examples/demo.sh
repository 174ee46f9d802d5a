#!/usr/bin/env bash
# Runs pgquery over a GSSAPI-encrypted connection to the test fixture and
# checks that the server reports it as encrypted for the fixture's principal:
#
#   tests/fixture/pgkrb run -- examples/demo.sh
#
# Build pgquery first with `make -C examples`. Prints pgquery's output and
# exits 1 unless pg_stat_gssapi shows this backend with encrypted = t and
# principal $PGGSS_PRINCIPAL.

set -u -o pipefail

readonly HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly PGQUERY=$HERE/pgquery
readonly STAT_QUERY="SELECT pid = pg_backend_pid() AS mine, gss_authenticated, encrypted, principal FROM pg_stat_gssapi WHERE pid = pg_backend_pid()"

fail() {
    echo "demo: $*" >&2
    exit 1
}

[ -n "${PGGSS_PRINCIPAL:-}" ] || fail "the fixture's environment is missing; run: tests/fixture/pgkrb run -- examples/demo.sh"
[ -x "$PGQUERY" ] || fail "$PGQUERY is not built; run: make -C examples"

output_dir=$(mktemp -d "${TMPDIR:-/tmp}/pggss-demo.XXXXXX") || fail "mktemp failed"
trap 'rm -rf -- "$output_dir"' EXIT

echo "\$ pgquery \"$STAT_QUERY\" \"SELECT version()\""
"$PGQUERY" "$STAT_QUERY" "SELECT version()" >"$output_dir/stdout" 2>"$output_dir/stderr"
status=$?
cat "$output_dir/stderr" >&2
cat "$output_dir/stdout"
[ "$status" -eq 0 ] || fail "pgquery exited with status $status"

grep -qx 'mine|gss_authenticated|encrypted|principal' "$output_dir/stdout" \
    || fail "the pg_stat_gssapi header line is missing"
grep -qxF "t|t|t|$PGGSS_PRINCIPAL" "$output_dir/stdout" \
    || fail "pg_stat_gssapi does not show this backend with encrypted = t and principal $PGGSS_PRINCIPAL"
grep -q '^PostgreSQL ' "$output_dir/stdout" || fail "the output of SELECT version() is missing"
grep -qF "pggssenc: GSSAPI encryption in use, client principal $PGGSS_PRINCIPAL," "$output_dir/stderr" \
    || fail "pgquery did not report GSSAPI encryption for $PGGSS_PRINCIPAL"

echo "demo: the connection is GSSAPI-encrypted for $PGGSS_PRINCIPAL, as pg_stat_gssapi shows"
