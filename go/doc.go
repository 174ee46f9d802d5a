// Package pggssenc gives Go PostgreSQL drivers GSSAPI (Kerberos) session
// encryption, the transport libpq selects with gssencmode, through the C
// library libpggssenc.
//
// A Dialer connects, sends GSSENCRequest, runs the GSSAPI handshake and
// returns a net.Conn (a *Conn) on which the driver then speaks the
// PostgreSQL protocol unchanged: Write encrypts, Read decrypts. Drivers
// need no changes; pgx takes Dialer.DialContext as its DialFunc and
// lib/pq takes a *Dialer through pq.DialOpen or Connector.Dialer. The
// driver must not negotiate TLS on the connection (sslmode=disable).
//
// With a server whose pg_hba.conf line is `hostgssenc ... gss`, the server
// skips the GSSAPI authentication exchange on an encrypted connection and
// replies to the StartupMessage with AuthenticationOk.
//
// The package links libpggssenc from ../target/release by default (run
// `cargo build --release` in the repository root first). Build with
// `-tags pggssenc_pkgconfig` to link an installed copy through pkg-config.
package pggssenc
