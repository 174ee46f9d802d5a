package pggssenc

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The tests run against the fixture of tests/fixture/pgkrb: a KDC for realm
// PGGSS.TEST and a PostgreSQL server on 127.0.0.1 whose pg_hba.conf allows
// TCP clients only through hostgssenc, with service principal
// postgres/localhost.

// fixtureVariables are the variables of the fixture that the tests read.
var fixtureVariables = []string{"PGPORT", "PGGSS_SOCKDIR", "PGGSS_PRINCIPAL", "KRB5CCNAME", "PGUSER", "PGDATABASE"}

func TestMain(m *testing.M) {
	for _, name := range fixtureVariables {
		if os.Getenv(name) == "" {
			fmt.Fprintf(os.Stderr, "environment variable %s is not set: run the tests inside the fixture, "+
				"for example with go/run-tests or tests/fixture/pgkrb run -- bash -c 'cd go && go test ./...'\n", name)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// tcpAddress is the server's TCP address; the service principal's host is
// "localhost".
func tcpAddress() string {
	return net.JoinHostPort("127.0.0.1", os.Getenv("PGPORT"))
}

// socketPath is the server's Unix socket, where the server declines
// GSSENCRequest.
func socketPath() string {
	return filepath.Join(os.Getenv("PGGSS_SOCKDIR"), ".s.PGSQL."+os.Getenv("PGPORT"))
}

func principal() string {
	return os.Getenv("PGGSS_PRINCIPAL")
}

func encryptedDialer() *Dialer {
	return &Dialer{Host: "localhost", GSSEncMode: "require"}
}

// testContext returns a context that ends with the test or after timeout.
func testContext(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// dialConn dials the fixture server with d and returns the *Conn, closed
// when the test ends.
func dialConn(t *testing.T, d *Dialer, network, addr string) *Conn {
	t.Helper()
	netConn, err := d.DialContext(testContext(t, 20*time.Second), network, addr)
	if err != nil {
		t.Fatalf("DialContext(%s, %s): %v", network, addr, err)
	}
	conn, ok := netConn.(*Conn)
	if !ok {
		t.Fatalf("DialContext returned %T, expected *Conn", netConn)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// startSession sends a StartupMessage on conn and reads the server's
// messages up to ReadyForQuery. It returns the frontend and the type names
// of the messages received, in order.
func startSession(t *testing.T, conn net.Conn) (*pgproto3.Frontend, []string) {
	t.Helper()
	frontend := pgproto3.NewFrontend(conn, conn)
	frontend.Send(&pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters:      map[string]string{"user": os.Getenv("PGUSER"), "database": os.Getenv("PGDATABASE")},
	})
	if err := frontend.Flush(); err != nil {
		t.Fatalf("sending StartupMessage: %v", err)
	}

	var received []string
	for {
		msg, err := frontend.Receive()
		if err != nil {
			t.Fatalf("receiving the answer to StartupMessage after %v: %v", received, err)
		}
		received = append(received, fmt.Sprintf("%T", msg))
		switch msg := msg.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("server rejected StartupMessage: %s %s", msg.Code, msg.Message)
		case *pgproto3.ReadyForQuery:
			return frontend, received
		}
	}
}

// simpleQuery runs sql with the simple query protocol and returns each row
// as its columns joined with "|" (NULL as an empty string).
func simpleQuery(t *testing.T, frontend *pgproto3.Frontend, sql string) []string {
	t.Helper()
	frontend.Send(&pgproto3.Query{String: sql})
	if err := frontend.Flush(); err != nil {
		t.Fatalf("sending query %q: %v", sql, err)
	}
	return receiveRows(t, frontend, sql)
}

// receiveRows reads the messages of one query up to ReadyForQuery.
func receiveRows(t *testing.T, frontend *pgproto3.Frontend, sql string) []string {
	t.Helper()
	var rows []string
	for {
		msg, err := frontend.Receive()
		if err != nil {
			t.Fatalf("receiving the result of %q: %v", sql, err)
		}
		switch msg := msg.(type) {
		case *pgproto3.DataRow:
			columns := make([]string, len(msg.Values))
			for i, value := range msg.Values {
				columns[i] = string(value)
			}
			rows = append(rows, strings.Join(columns, "|"))
		case *pgproto3.ErrorResponse:
			t.Fatalf("query %q failed: %s %s", sql, msg.Code, msg.Message)
		case *pgproto3.ReadyForQuery:
			return rows
		}
	}
}

// ownGSSStatus is the pg_stat_gssapi row of the session's own backend:
// gss_authenticated|principal|encrypted.
const ownGSSStatus = "select gss_authenticated, principal, encrypted from pg_stat_gssapi where pid = pg_backend_pid()"
