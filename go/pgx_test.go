package pggssenc

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgxConnString connects over TCP to the address the fixture server
// listens on. sslmode=disable keeps pgx from starting TLS on the
// connection, and require_auth=none makes pgx fail if the server requests
// any authentication, GSSAPI included, because on an encrypted connection
// a hostgssenc line must reply with AuthenticationOk at once.
func pgxConnString() string {
	return fmt.Sprintf("host=127.0.0.1 port=%s user=%s dbname=%s sslmode=disable require_auth=none connect_timeout=20",
		os.Getenv("PGPORT"), os.Getenv("PGUSER"), os.Getenv("PGDATABASE"))
}

func pgxConfig(t *testing.T, d *Dialer) *pgx.ConnConfig {
	t.Helper()
	config, err := pgx.ParseConfig(pgxConnString())
	if err != nil {
		t.Fatalf("pgx.ParseConfig: %v", err)
	}
	if config.TLSConfig != nil || len(config.Fallbacks) != 0 {
		t.Fatalf("pgx config has TLS (%v) or fallbacks (%d); sslmode=disable expected neither", config.TLSConfig, len(config.Fallbacks))
	}
	config.DialFunc = d.DialContext
	return config
}

func pgxConnect(t *testing.T, d *Dialer) *pgx.Conn {
	t.Helper()
	conn, err := pgx.ConnectConfig(testContext(t, 20*time.Second), pgxConfig(t, d))
	if err != nil {
		t.Fatalf("pgx.ConnectConfig: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPgxEncryptedSession(t *testing.T) {
	conn := pgxConnect(t, encryptedDialer())
	ctx := testContext(t, 20*time.Second)

	var authenticated, encrypted bool
	var gssPrincipal string
	if err := conn.QueryRow(ctx, ownGSSStatus).Scan(&authenticated, &gssPrincipal, &encrypted); err != nil {
		t.Fatalf("querying pg_stat_gssapi: %v", err)
	}
	if !authenticated || !encrypted || gssPrincipal != principal() {
		t.Fatalf("pg_stat_gssapi = %v, %q, %v; expected true, %q, true", authenticated, gssPrincipal, encrypted, principal())
	}

	gssConn, ok := conn.PgConn().Conn().(*Conn)
	if !ok {
		t.Fatalf("pgx's net.Conn is %T, expected *pggssenc.Conn", conn.PgConn().Conn())
	}
	if !gssConn.Encrypted() {
		t.Fatal("Conn.Encrypted() = false under pgx")
	}
}

// TestPgxLargeResult reads about 24 MB of text (750000 md5 values) and
// compares a client-side MD5 of all of it with the server's.
func TestPgxLargeResult(t *testing.T) {
	const rowCount = 750000
	conn := pgxConnect(t, encryptedDialer())
	ctx := testContext(t, 60*time.Second)

	rows, err := conn.Query(ctx, "select md5(i::text) from generate_series(1, $1::int) as i order by i", rowCount)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	digest := md5.New()
	count, textBytes := 0, 0
	for rows.Next() {
		value := rows.RawValues()[0]
		digest.Write(value)
		textBytes += len(value)
		count++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading rows: %v", err)
	}
	if count != rowCount {
		t.Fatalf("received %d rows, expected %d", count, rowCount)
	}
	if textBytes < 20_000_000 {
		t.Fatalf("received %d bytes of text, expected at least 20 MB", textBytes)
	}

	var serverSum string
	err = conn.QueryRow(ctx, "select md5(string_agg(md5(i::text), '' order by i)) from generate_series(1, $1::int) as i", rowCount).Scan(&serverSum)
	if err != nil {
		t.Fatalf("server-side checksum: %v", err)
	}
	if clientSum := hex.EncodeToString(digest.Sum(nil)); clientSum != serverSum {
		t.Fatalf("client MD5 %s differs from server MD5 %s", clientSum, serverSum)
	}
}

// TestPgxLargeParameter sends 8 MB in one Bind message, more than the
// library queues (256 KiB), so Write runs its backpressure loop.
func TestPgxLargeParameter(t *testing.T) {
	conn := pgxConnect(t, encryptedDialer())
	ctx := testContext(t, 60*time.Second)

	random := make([]byte, 4<<20)
	rand.Read(random)
	payload := hex.EncodeToString(random)
	sum := md5.Sum([]byte(payload))

	var length int
	var serverSum string
	if err := conn.QueryRow(ctx, "select length($1::text), md5($1::text)", payload).Scan(&length, &serverSum); err != nil {
		t.Fatalf("query: %v", err)
	}
	if length != len(payload) || serverSum != hex.EncodeToString(sum[:]) {
		t.Fatalf("server saw %d bytes with MD5 %s, expected %d bytes with MD5 %x", length, serverSum, len(payload), sum)
	}
}

func TestPgxServerError(t *testing.T) {
	conn := pgxConnect(t, encryptedDialer())
	ctx := testContext(t, 20*time.Second)

	var result int
	err := conn.QueryRow(ctx, "select 1 / 0").Scan(&result)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("select 1 / 0: %v (%T), expected *pgconn.PgError", err, err)
	}
	if pgErr.Code != "22012" || pgErr.Message != "division by zero" || pgErr.Severity != "ERROR" {
		t.Fatalf("PgError = %s %s %q, expected ERROR 22012 \"division by zero\"", pgErr.Severity, pgErr.Code, pgErr.Message)
	}

	// The session goes on after the error.
	if err := conn.QueryRow(ctx, "select 42").Scan(&result); err != nil || result != 42 {
		t.Fatalf("query after the error = %d, %v; expected 42", result, err)
	}
}

// TestPgxPoolConcurrent runs 40 goroutines over a pool of at most 8
// encrypted connections and checks every result.
func TestPgxPoolConcurrent(t *testing.T) {
	const goroutines, queriesEach, maxConns = 40, 25, 8
	poolConfig, err := pgxpool.ParseConfig(pgxConnString())
	if err != nil {
		t.Fatalf("pgxpool.ParseConfig: %v", err)
	}
	poolConfig.MaxConns = maxConns
	poolConfig.ConnConfig.DialFunc = encryptedDialer().DialContext
	ctx := testContext(t, 90*time.Second)
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		t.Fatalf("pgxpool.NewWithConfig: %v", err)
	}
	defer pool.Close()

	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	backends := sync.Map{}
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < queriesEach; i++ {
				n := g*1000 + i
				var doubled, pid int32
				var digest string
				var encrypted bool
				err := pool.QueryRow(ctx,
					"select $1::int * 2, md5($1::text), pg_backend_pid(), (select encrypted from pg_stat_gssapi where pid = pg_backend_pid())",
					n).Scan(&doubled, &digest, &pid, &encrypted)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d query %d: %w", g, i, err)
					return
				}
				sum := md5.Sum([]byte(fmt.Sprint(n)))
				if doubled != int32(2*n) || digest != hex.EncodeToString(sum[:]) || !encrypted {
					errs <- fmt.Errorf("goroutine %d query %d: got %d, %s, encrypted %v; expected %d, %x, true", g, i, doubled, digest, encrypted, 2*n, sum)
					return
				}
				backends.Store(pid, true)
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	distinct := 0
	backends.Range(func(any, any) bool { distinct++; return true })
	if distinct < 2 || distinct > maxConns {
		t.Fatalf("queries ran on %d backends, expected between 2 and %d", distinct, maxConns)
	}
	if total := pool.Stat().TotalConns(); total > maxConns {
		t.Fatalf("pool holds %d connections, more than MaxConns %d", total, maxConns)
	}
}

// TestPgxContextDeadline uses pgx's default context handling, which sets a
// deadline on the net.Conn; the connection is closed afterwards.
func TestPgxContextDeadline(t *testing.T) {
	conn := pgxConnect(t, encryptedDialer())

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := conn.Exec(ctx, "select pg_sleep(10)")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exec past the context deadline: %v, expected context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("Exec returned after %v, expected about 300ms", elapsed)
	}
	if !conn.IsClosed() {
		t.Fatal("pgx did not close the connection after the deadline")
	}
}

// TestPgxCancelRequest makes pgx send a CancelRequest, which it dials
// through the same DialFunc: the server cancels the statement over a
// second encrypted connection, and the first connection stays usable.
func TestPgxCancelRequest(t *testing.T) {
	config := pgxConfig(t, encryptedDialer())
	config.BuildContextWatcherHandler = func(pgConn *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pgConn, DeadlineDelay: 10 * time.Second}
	}
	conn, err := pgx.ConnectConfig(testContext(t, 20*time.Second), config)
	if err != nil {
		t.Fatalf("pgx.ConnectConfig: %v", err)
	}
	defer conn.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = conn.Exec(ctx, "select pg_sleep(10)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("canceled Exec: %v, expected SQLSTATE 57014 (query_canceled)", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("Exec returned after %v, expected about 300ms", elapsed)
	}

	var result string
	if err := conn.QueryRow(testContext(t, 20*time.Second), "select 'still here'").Scan(&result); err != nil || result != "still here" {
		t.Fatalf("query after the cancel = %q, %v", result, err)
	}
}

func TestPgxWrongServiceName(t *testing.T) {
	d := &Dialer{Host: "localhost", KrbSrvName: "nosuchservice", GSSEncMode: "require"}
	_, err := pgx.ConnectConfig(testContext(t, 20*time.Second), pgxConfig(t, d))
	expectError(t, err, "negotiate", ResultGSSFailure, "Server nosuchservice/localhost@PGGSS.TEST not found in Kerberos database")
}

func TestPgxUnixSocketRequireDeclined(t *testing.T) {
	config, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable",
		os.Getenv("PGGSS_SOCKDIR"), os.Getenv("PGPORT"), os.Getenv("PGUSER"), os.Getenv("PGDATABASE")))
	if err != nil {
		t.Fatalf("pgx.ParseConfig: %v", err)
	}
	config.DialFunc = (&Dialer{Host: "localhost", GSSEncMode: "require"}).DialContext
	_, err = pgx.ConnectConfig(testContext(t, 20*time.Second), config)
	expectError(t, err, "negotiate", ResultServerDeclined, "declined GSSENCRequest ('N')")
}
