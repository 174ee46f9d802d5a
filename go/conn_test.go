package pggssenc

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestConnEncryptedSession(t *testing.T) {
	conn := dialConn(t, encryptedDialer(), "tcp", tcpAddress())

	if !conn.Encrypted() {
		t.Fatal("Encrypted() = false, expected true")
	}
	if got := conn.Outcome(); got != OutcomeEncrypted {
		t.Fatalf("Outcome() = %v, expected %v", got, OutcomeEncrypted)
	}
	if got := conn.Notice(); got != "" {
		t.Fatalf("Notice() = %q, expected \"\"", got)
	}
	got, err := conn.ClientPrincipal()
	if err != nil {
		t.Fatalf("ClientPrincipal: %v", err)
	}
	if got != principal() {
		t.Fatalf("ClientPrincipal() = %q, expected %q", got, principal())
	}
	if max := conn.MaxPlaintext(); max <= 0 || max >= 16384 {
		t.Fatalf("MaxPlaintext() = %d, expected between 1 and 16383", max)
	}
	if conn.CredentialsDelegated() {
		t.Fatal("CredentialsDelegated() = true without GSSDelegation")
	}
	if got := conn.RemoteAddr().String(); got != tcpAddress() {
		t.Fatalf("RemoteAddr() = %s, expected %s", got, tcpAddress())
	}

	// hostgssenc ... gss skips the authentication exchange on an
	// encrypted connection: AuthenticationOk comes first.
	frontend, received := startSession(t, conn)
	if received[0] != "*pgproto3.AuthenticationOk" {
		t.Fatalf("first message after StartupMessage is %s, expected *pgproto3.AuthenticationOk (all: %v)", received[0], received)
	}
	rows := simpleQuery(t, frontend, ownGSSStatus)
	expected := "t|" + principal() + "|t"
	if len(rows) != 1 || rows[0] != expected {
		t.Fatalf("pg_stat_gssapi rows = %q, expected [%q]", rows, expected)
	}
}

func TestConnReadDeadlinePast(t *testing.T) {
	conn := dialConn(t, encryptedDialer(), "tcp", tcpAddress())
	frontend, _ := startSession(t, conn)

	if err := conn.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	buf := make([]byte, 100)
	n, err := conn.Read(buf)
	if n != 0 {
		t.Fatalf("Read past the deadline returned %d bytes", n)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, expected os.ErrDeadlineExceeded", err)
	}
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("Read past the deadline: %v is not a net.Error with Timeout() true", err)
	}

	// A read timeout leaves the stream intact.
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	rows := simpleQuery(t, frontend, "select 'after the deadline'")
	if len(rows) != 1 || rows[0] != "after the deadline" {
		t.Fatalf("rows after a read timeout = %q", rows)
	}
}

func TestConnReadDeadlineMidQuery(t *testing.T) {
	conn := dialConn(t, encryptedDialer(), "tcp", tcpAddress())
	frontend, _ := startSession(t, conn)

	frontend.Send(&pgproto3.Query{String: "select pg_sleep(0.5), 'slept'"})
	if err := frontend.Flush(); err != nil {
		t.Fatalf("sending query: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	_, err := conn.Read(make([]byte, 100))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read while the server sleeps: %v, expected os.ErrDeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 400*time.Millisecond {
		t.Fatalf("Read returned after %v, expected about 100ms", elapsed)
	}

	conn.SetReadDeadline(time.Time{})
	rows := receiveRows(t, frontend, "pg_sleep")
	if len(rows) != 1 || rows[0] != "|slept" {
		t.Fatalf("rows after the timeout = %q, expected [\"|slept\"]", rows)
	}
}

func TestConnWriteDeadlinePast(t *testing.T) {
	conn := dialConn(t, encryptedDialer(), "tcp", tcpAddress())
	frontend, _ := startSession(t, conn)

	conn.SetWriteDeadline(time.Now().Add(-time.Second))
	query, err := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	if err != nil {
		t.Fatalf("encoding query: %v", err)
	}
	n, err := conn.Write(query)
	if n != 0 {
		t.Fatalf("Write past the deadline returned %d, expected 0", n)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the deadline: %v, expected os.ErrDeadlineExceeded", err)
	}

	// Nothing was accepted, so the connection stays usable.
	conn.SetWriteDeadline(time.Time{})
	rows := simpleQuery(t, frontend, "select 'written'")
	if len(rows) != 1 || rows[0] != "written" {
		t.Fatalf("rows after a write timeout = %q", rows)
	}
}

func TestConnServerEndOfStream(t *testing.T) {
	conn := dialConn(t, encryptedDialer(), "tcp", tcpAddress())
	frontend, _ := startSession(t, conn)

	frontend.Send(&pgproto3.Terminate{})
	if err := frontend.Flush(); err != nil {
		t.Fatalf("sending Terminate: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(make([]byte, 100))
	if n != 0 || err != io.EOF {
		t.Fatalf("Read after Terminate = %d, %v; expected 0, io.EOF", n, err)
	}
}

func TestConnCloseUnblocksRead(t *testing.T) {
	conn := dialConn(t, encryptedDialer(), "tcp", tcpAddress())
	startSession(t, conn)

	readDone := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 100))
		readDone <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := conn.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	select {
	case err := <-readDone:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked Read after Close: %v, expected net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5s after Close")
	}

	if _, err := conn.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, expected net.ErrClosed", err)
	}
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, expected net.ErrClosed", err)
	}
	if err := conn.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, expected net.ErrClosed", err)
	}
}

// TestConnConcurrentReadWrite writes queries from one goroutine while
// another reads the results. The server sends results while queries still
// arrive, so a Write that held the connection while Read waits, or the
// other way round, would deadlock. The race detector checks the handle's
// locking.
func TestConnConcurrentReadWrite(t *testing.T) {
	const queries = 3000
	conn := dialConn(t, encryptedDialer(), "tcp", tcpAddress())
	startSession(t, conn)
	conn.SetDeadline(time.Now().Add(60 * time.Second))

	writeDone := make(chan error, 1)
	go func() {
		var batch []byte
		for i := 0; i < queries; i++ {
			var err error
			batch, err = (&pgproto3.Query{String: fmt.Sprintf("select %d, md5('%d'), repeat('x', 1000)", i, i)}).Encode(batch)
			if err != nil {
				writeDone <- err
				return
			}
			if len(batch) > 32*1024 || i == queries-1 {
				if _, err := conn.Write(batch); err != nil {
					writeDone <- err
					return
				}
				batch = batch[:0]
			}
		}
		writeDone <- nil
	}()

	frontend := pgproto3.NewFrontend(conn, conn)
	padding := strings.Repeat("x", 1000)
	for i := 0; i < queries; i++ {
		rows := receiveRows(t, frontend, fmt.Sprintf("query %d", i))
		sum := md5.Sum([]byte(fmt.Sprint(i)))
		expected := fmt.Sprintf("%d|%s|%s", i, hex.EncodeToString(sum[:]), padding)
		if len(rows) != 1 || rows[0] != expected {
			t.Fatalf("query %d returned %d rows, first %.60q; expected %.60q", i, len(rows), rows, expected)
		}
	}
	if err := <-writeDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
}

// TestConnConcurrentWriters checks that Writes from several goroutines
// are serialized whole: each Write carries complete messages, so the
// server receives every query intact.
func TestConnConcurrentWriters(t *testing.T) {
	const writers, perWriter = 8, 50
	conn := dialConn(t, encryptedDialer(), "tcp", tcpAddress())
	frontend, _ := startSession(t, conn)
	conn.SetDeadline(time.Now().Add(60 * time.Second))

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				message, err := (&pgproto3.Query{String: fmt.Sprintf("select %d", w*perWriter+i)}).Encode(nil)
				if err == nil {
					_, err = conn.Write(message)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}

	seen := make(map[string]bool)
	for i := 0; i < writers*perWriter; i++ {
		rows := receiveRows(t, frontend, "concurrent write")
		if len(rows) != 1 {
			t.Fatalf("answer %d has %d rows, expected 1", i, len(rows))
		}
		seen[rows[0]] = true
	}
	for i := 0; i < writers*perWriter; i++ {
		if !seen[fmt.Sprint(i)] {
			t.Fatalf("no answer to query %d", i)
		}
	}
}
