package pggssenc

import (
	"crypto/md5"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"
)

// pqConnString names host localhost and connects to hostaddr 127.0.0.1,
// so lib/pq dials 127.0.0.1; the Dialer's Host supplies the service
// principal's host. lib/pq defaults to sslmode=require, so disable it.
func pqConnString() string {
	return fmt.Sprintf("host=localhost hostaddr=127.0.0.1 port=%s user=%s dbname=%s sslmode=disable connect_timeout=20",
		os.Getenv("PGPORT"), os.Getenv("PGUSER"), os.Getenv("PGDATABASE"))
}

func pqOpen(t *testing.T, d *Dialer) *sql.DB {
	t.Helper()
	connector, err := pq.NewConnector(pqConnString())
	if err != nil {
		t.Fatalf("pq.NewConnector: %v", err)
	}
	connector.Dialer(d)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPqEncryptedSession(t *testing.T) {
	db := pqOpen(t, encryptedDialer())
	ctx := testContext(t, 20*time.Second)

	var authenticated, encrypted bool
	var gssPrincipal string
	if err := db.QueryRowContext(ctx, ownGSSStatus).Scan(&authenticated, &gssPrincipal, &encrypted); err != nil {
		t.Fatalf("querying pg_stat_gssapi: %v", err)
	}
	if !authenticated || !encrypted || gssPrincipal != principal() {
		t.Fatalf("pg_stat_gssapi = %v, %q, %v; expected true, %q, true", authenticated, gssPrincipal, encrypted, principal())
	}
}

// TestPqDialOpen uses pq.DialOpen, which takes the Dialer directly and
// returns a database/sql/driver connection.
func TestPqDialOpen(t *testing.T) {
	driverConn, err := pq.DialOpen(encryptedDialer(), pqConnString())
	if err != nil {
		t.Fatalf("pq.DialOpen: %v", err)
	}
	defer driverConn.Close()

	queryer, ok := driverConn.(driver.QueryerContext)
	if !ok {
		t.Fatalf("%T does not implement driver.QueryerContext", driverConn)
	}
	rows, err := queryer.QueryContext(testContext(t, 20*time.Second), ownGSSStatus, nil)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	defer rows.Close()
	values := make([]driver.Value, 3)
	if err := rows.Next(values); err != nil {
		t.Fatalf("reading the row: %v", err)
	}
	got := fmt.Sprintf("%v|%s|%v", values[0], values[1], values[2])
	expected := "true|" + principal() + "|true"
	if got != expected {
		t.Fatalf("pg_stat_gssapi row = %q, expected %q", got, expected)
	}
}

// TestPqLargeResult reads about 24 MB of text and compares a client-side
// MD5 with the server's.
func TestPqLargeResult(t *testing.T) {
	const rowCount = 750000
	db := pqOpen(t, encryptedDialer())
	ctx := testContext(t, 60*time.Second)

	rows, err := db.QueryContext(ctx, "select md5(i::text) from generate_series(1, $1::int) as i order by i", rowCount)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	defer rows.Close()
	digest := md5.New()
	count, textBytes := 0, 0
	var value sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&value); err != nil {
			t.Fatalf("scan: %v", err)
		}
		digest.Write(value)
		textBytes += len(value)
		count++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading rows: %v", err)
	}
	if count != rowCount || textBytes < 20_000_000 {
		t.Fatalf("received %d rows and %d bytes, expected %d rows and at least 20 MB", count, textBytes, rowCount)
	}

	var serverSum string
	err = db.QueryRowContext(ctx, "select md5(string_agg(md5(i::text), '' order by i)) from generate_series(1, $1::int) as i", rowCount).Scan(&serverSum)
	if err != nil {
		t.Fatalf("server-side checksum: %v", err)
	}
	if clientSum := hex.EncodeToString(digest.Sum(nil)); clientSum != serverSum {
		t.Fatalf("client MD5 %s differs from server MD5 %s", clientSum, serverSum)
	}
}

func TestPqServerError(t *testing.T) {
	db := pqOpen(t, encryptedDialer())
	ctx := testContext(t, 20*time.Second)

	var result int
	err := db.QueryRowContext(ctx, "select 1 / 0").Scan(&result)
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) {
		t.Fatalf("select 1 / 0: %v (%T), expected *pq.Error", err, err)
	}
	if pqErr.Code != "22012" || pqErr.Message != "division by zero" {
		t.Fatalf("pq.Error = %s %q, expected 22012 \"division by zero\"", pqErr.Code, pqErr.Message)
	}
	if err := db.QueryRowContext(ctx, "select 7").Scan(&result); err != nil || result != 7 {
		t.Fatalf("query after the error = %d, %v; expected 7", result, err)
	}
}

// TestPqConcurrent runs 32 goroutines over database/sql with at most 8
// open connections.
func TestPqConcurrent(t *testing.T) {
	const goroutines, queriesEach, maxConns = 32, 20, 8
	db := pqOpen(t, encryptedDialer())
	db.SetMaxOpenConns(maxConns)
	ctx := testContext(t, 90*time.Second)

	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < queriesEach; i++ {
				n := g*1000 + i
				var doubled int
				var digest string
				var encrypted bool
				err := db.QueryRowContext(ctx,
					"select $1::int * 2, md5($1::text), (select encrypted from pg_stat_gssapi where pid = pg_backend_pid())",
					n).Scan(&doubled, &digest, &encrypted)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d query %d: %w", g, i, err)
					return
				}
				sum := md5.Sum([]byte(fmt.Sprint(n)))
				if doubled != 2*n || digest != hex.EncodeToString(sum[:]) || !encrypted {
					errs <- fmt.Errorf("goroutine %d query %d: got %d, %s, encrypted %v; expected %d, %x, true", g, i, doubled, digest, encrypted, 2*n, sum)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if open := db.Stats().OpenConnections; open > maxConns {
		t.Fatalf("%d open connections, more than %d", open, maxConns)
	}
}

func TestPqWrongServiceName(t *testing.T) {
	db := pqOpen(t, &Dialer{Host: "localhost", KrbSrvName: "nosuchservice", GSSEncMode: "require"})
	err := db.PingContext(testContext(t, 20*time.Second))
	expectError(t, err, "negotiate", ResultGSSFailure, "Server nosuchservice/localhost@PGGSS.TEST not found in Kerberos database")
}
