package pggssenc

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// expectError checks that err is an *Error with the given operation and
// code whose message contains fragment.
func expectError(t *testing.T, err error, op string, code Result, fragment string) *Error {
	t.Helper()
	var libErr *Error
	if !errors.As(err, &libErr) {
		t.Fatalf("error %v (%T) is not a *pggssenc.Error", err, err)
	}
	if libErr.Op != op {
		t.Errorf("Op = %q, expected %q", libErr.Op, op)
	}
	if libErr.Code != code {
		t.Errorf("Code = %d (%v), expected %d (%v); message: %s", libErr.Code, libErr.Code, code, code, libErr.Message)
	}
	if !errors.Is(err, code) {
		t.Errorf("errors.Is(err, %v) = false", code)
	}
	if !strings.Contains(libErr.Message, fragment) {
		t.Errorf("Message = %q, expected it to contain %q", libErr.Message, fragment)
	}
	return libErr
}

func TestDialWrongServiceName(t *testing.T) {
	d := &Dialer{Host: "localhost", KrbSrvName: "nosuchservice", GSSEncMode: "require"}
	conn, err := d.DialContext(testContext(t, 20*time.Second), "tcp", tcpAddress())
	if conn != nil {
		t.Fatalf("DialContext returned a connection %v", conn)
	}
	libErr := expectError(t, err, "negotiate", ResultGSSFailure,
		"Server nosuchservice/localhost@PGGSS.TEST not found in Kerberos database")
	if !strings.Contains(libErr.Message, "gss_init_sec_context") {
		t.Errorf("Message = %q, expected the failed GSSAPI call gss_init_sec_context", libErr.Message)
	}
	expected := "pggssenc: negotiate: " + libErr.Message + " (result 109)"
	if err.Error() != expected {
		t.Errorf("Error() = %q, expected %q", err.Error(), expected)
	}
}

func TestDialUnixSocketRequireDeclined(t *testing.T) {
	d := &Dialer{Host: "localhost", GSSEncMode: "require"}
	_, err := d.DialContext(testContext(t, 20*time.Second), "unix", socketPath())
	expectError(t, err, "negotiate", ResultServerDeclined, "declined GSSENCRequest ('N'), and gssencmode is \"require\"")
}

func TestDialUnixSocketPreferPlaintext(t *testing.T) {
	d := &Dialer{Host: "localhost", GSSEncMode: "prefer"}
	conn := dialConn(t, d, "unix", socketPath())

	if conn.Encrypted() {
		t.Fatal("Encrypted() = true on a connection the server declined")
	}
	if got := conn.Outcome(); got != OutcomeServerDeclined {
		t.Fatalf("Outcome() = %v, expected %v", got, OutcomeServerDeclined)
	}
	if !strings.Contains(conn.Notice(), "declined GSSAPI encryption ('N')") {
		t.Fatalf("Notice() = %q, expected the reason for the fallback", conn.Notice())
	}
	if _, err := conn.ClientPrincipal(); !errors.Is(err, ResultInvalidState) {
		t.Fatalf("ClientPrincipal on a plaintext connection: %v, expected ResultInvalidState", err)
	}
	if got := conn.MaxPlaintext(); got != 0 {
		t.Fatalf("MaxPlaintext() = %d on a plaintext connection, expected 0", got)
	}

	// pg_hba.conf trusts local connections: the session runs in plaintext.
	frontend, _ := startSession(t, conn)
	rows := simpleQuery(t, frontend, ownGSSStatus)
	if len(rows) != 1 || rows[0] != "f||f" {
		t.Fatalf("pg_stat_gssapi rows = %q, expected [\"f||f\"]", rows)
	}
}

func TestDialDisabledSendsNothing(t *testing.T) {
	d := &Dialer{GSSEncMode: "disable"}
	conn := dialConn(t, d, "unix", socketPath())
	if got := conn.Outcome(); got != OutcomeDisabled {
		t.Fatalf("Outcome() = %v, expected %v", got, OutcomeDisabled)
	}
	frontend, received := startSession(t, conn)
	if received[0] != "*pgproto3.AuthenticationOk" {
		t.Fatalf("first message is %s, expected *pgproto3.AuthenticationOk", received[0])
	}
	rows := simpleQuery(t, frontend, "select 'plain'")
	if len(rows) != 1 || rows[0] != "plain" {
		t.Fatalf("rows = %q", rows)
	}
}

func TestDialInvalidParameterBeforeConnecting(t *testing.T) {
	dialed := false
	netDialer := &net.Dialer{Control: func(string, string, syscall.RawConn) error {
		dialed = true
		return nil
	}}
	cases := []struct {
		dialer   Dialer
		op       string
		fragment string
	}{
		{Dialer{Host: "localhost", GSSEncMode: "always"}, "set parameter gssencmode",
			`invalid value for parameter "gssencmode": "always"; expected "disable", "prefer" or "require"`},
		{Dialer{Host: "localhost", KrbSrvName: "postgres@localhost"}, "set parameter krbsrvname",
			`invalid value for parameter "krbsrvname": "postgres@localhost"`},
		{Dialer{Host: "db1,db2"}, "set parameter host", `invalid value for parameter "host": "db1,db2"`},
		{Dialer{Host: "local\x00host"}, "set parameter host", "NUL byte"},
		{Dialer{Conninfo: "host='localhost"}, "parse connection string", `unterminated quoted value for "host"`},
		{Dialer{Conninfo: "gssdelegation=2"}, "parse connection string", `invalid value for parameter "gssdelegation": "2"`},
	}
	for _, tc := range cases {
		tc.dialer.NetDialer = netDialer
		conn, err := tc.dialer.DialContext(testContext(t, 20*time.Second), "tcp", tcpAddress())
		if conn != nil {
			t.Fatalf("%+v: DialContext returned a connection", tc.dialer)
		}
		expectError(t, err, tc.op, ResultInvalidParameter, tc.fragment)
	}
	if dialed {
		t.Fatal("a Dialer with an invalid parameter opened a connection")
	}
}

func TestDialerFromConninfo(t *testing.T) {
	d, err := DialerFromConninfo("host=localhost port=5432 dbname=tester gssencmode=require sslmode=disable")
	if err != nil {
		t.Fatalf("DialerFromConninfo: %v", err)
	}
	conn := dialConn(t, d, "tcp", tcpAddress())
	if !conn.Encrypted() {
		t.Fatal("connection from a conninfo Dialer is not encrypted")
	}

	// The URI form; krbsrvname reaches the library.
	d, err = DialerFromConninfo("postgresql://localhost/tester?gssencmode=require&krbsrvname=otherservice")
	if err != nil {
		t.Fatalf("DialerFromConninfo(URI): %v", err)
	}
	_, err = d.DialContext(testContext(t, 20*time.Second), "tcp", tcpAddress())
	expectError(t, err, "negotiate", ResultGSSFailure, "Server otherservice/localhost@PGGSS.TEST not found in Kerberos database")

	// Explicit fields win over the connection string.
	d.KrbSrvName = "postgres"
	conn = dialConn(t, d, "tcp", tcpAddress())
	if !conn.Encrypted() {
		t.Fatal("KrbSrvName did not override the connection string's krbsrvname")
	}

	for conninfo, fragment := range map[string]string{
		"host='localhost":              `unterminated quoted value for "host"`,
		"host":                         "invalid connection string",
		"gssencmode=maybe":             `invalid value for parameter "gssencmode": "maybe"`,
		"postgresql://[::1/tester":     "invalid connection string",
		"dbname=tester\x00krbsrvname=": "NUL byte",
	} {
		d, err := DialerFromConninfo(conninfo)
		if d != nil {
			t.Errorf("DialerFromConninfo(%q) returned a Dialer", conninfo)
		}
		expectError(t, err, "parse connection string", ResultInvalidParameter, fragment)
	}
}

// TestDialHostFromAddress checks where the target host name comes from
// when Host is unset. It changes PGHOST, so it must not run in parallel.
func TestDialHostFromAddress(t *testing.T) {
	t.Setenv("PGHOST", "")
	d := &Dialer{GSSEncMode: "require"}

	conn := dialConn(t, d, "tcp4", net.JoinHostPort("localhost", os.Getenv("PGPORT")))
	if !conn.Encrypted() {
		t.Fatal("dialing localhost:port did not take the host name from the address")
	}

	// An IP address is not used as the host name.
	_, err := d.DialContext(testContext(t, 20*time.Second), "tcp", tcpAddress())
	expectError(t, err, "negotiate", ResultHostMissing, "")

	// PGHOST supplies it then, as in libpq.
	t.Setenv("PGHOST", "localhost")
	conn = dialConn(t, d, "tcp", tcpAddress())
	if !conn.Encrypted() {
		t.Fatal("PGHOST did not supply the host name")
	}
}

func TestDialCredentialDelegation(t *testing.T) {
	d := &Dialer{Host: "localhost", GSSEncMode: "require", GSSDelegation: true}
	conn := dialConn(t, d, "tcp", tcpAddress())
	if !conn.CredentialsDelegated() {
		t.Fatal("CredentialsDelegated() = false with GSSDelegation and a forwardable ticket")
	}
	// PostgreSQL 15 has no pg_stat_gssapi.credentials_delegated column;
	// the session must still work.
	frontend, _ := startSession(t, conn)
	rows := simpleQuery(t, frontend, ownGSSStatus)
	expected := "t|" + principal() + "|t"
	if len(rows) != 1 || rows[0] != expected {
		t.Fatalf("pg_stat_gssapi rows = %q, expected [%q]", rows, expected)
	}
}

func TestDialMissingCredentials(t *testing.T) {
	ccache := "FILE:" + t.TempDir() + "/no-such-ccache"

	d := &Dialer{Host: "localhost", GSSEncMode: "require", CCache: ccache}
	_, err := d.DialContext(testContext(t, 20*time.Second), "tcp", tcpAddress())
	expectError(t, err, "negotiate", ResultNoCredentials, `gssencmode is "require"`)

	// Under prefer nothing is sent; the server then rejects the plaintext
	// StartupMessage because pg_hba.conf has only hostgssenc lines for TCP.
	d.GSSEncMode = "prefer"
	conn := dialConn(t, d, "tcp", tcpAddress())
	if got := conn.Outcome(); got != OutcomeNoCredentials {
		t.Fatalf("Outcome() = %v, expected %v", got, OutcomeNoCredentials)
	}
	if conn.Notice() == "" {
		t.Fatal("Notice() is empty after a fallback for missing credentials")
	}

	frontend := pgproto3.NewFrontend(conn, conn)
	frontend.Send(&pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters:      map[string]string{"user": os.Getenv("PGUSER"), "database": os.Getenv("PGDATABASE")},
	})
	if err := frontend.Flush(); err != nil {
		t.Fatalf("sending StartupMessage: %v", err)
	}
	msg, err := frontend.Receive()
	if err != nil {
		t.Fatalf("receiving the answer to a plaintext StartupMessage: %v", err)
	}
	errorResponse, ok := msg.(*pgproto3.ErrorResponse)
	if !ok {
		t.Fatalf("answer to a plaintext StartupMessage is %T, expected *pgproto3.ErrorResponse", msg)
	}
	if errorResponse.Code != "28000" || !strings.Contains(errorResponse.Message, "no pg_hba.conf entry") {
		t.Fatalf("ErrorResponse %s %q, expected 28000 and \"no pg_hba.conf entry\"", errorResponse.Code, errorResponse.Message)
	}
}

// listen starts a TCP listener on loopback that serves each accepted
// connection with serve, and closes when the test ends.
func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { listener.Close() })
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				serve(conn)
			}()
		}
	}()
	return listener.Addr().String()
}

// readRequest reads the 8-byte GSSENCRequest and checks its bytes.
func readRequest(t *testing.T, conn net.Conn) bool {
	request := make([]byte, 8)
	if _, err := io.ReadFull(conn, request); err != nil {
		t.Errorf("server: reading GSSENCRequest: %v", err)
		return false
	}
	expected := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}
	if string(request) != string(expected) {
		t.Errorf("server: request % x, expected GSSENCRequest % x", request, expected)
		return false
	}
	return true
}

func TestDialContextDeadlineDuringNegotiation(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr := listen(t, func(conn net.Conn) {
		readRequest(t, conn)
		<-release
	})

	ctx := testContext(t, 300*time.Millisecond)
	start := time.Now()
	_, err := encryptedDialer().DialContext(ctx, "tcp", addr)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DialContext with a silent server: %v, expected context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Fatalf("DialContext returned after %v, expected about 300ms", elapsed)
	}
}

func TestDialContextCanceledDuringNegotiation(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr := listen(t, func(conn net.Conn) {
		readRequest(t, conn)
		<-release
	})

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := encryptedDialer().DialContext(ctx, "tcp", addr)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("DialContext canceled during negotiation: %v, expected context.Canceled", err)
	}
}

func TestDialServerAnswersError(t *testing.T) {
	addr := listen(t, func(conn net.Conn) {
		if readRequest(t, conn) {
			// An ErrorResponse as a pre-12 server sends for an unknown request code.
			message := "SFATAL\x00C08P01\x00Munsupported frontend protocol 1234.5680\x00\x00"
			length := 4 + len(message)
			conn.Write(append([]byte{'E', 0, 0, byte(length >> 8), byte(length)}, message...))
		}
	})
	_, err := encryptedDialer().DialContext(testContext(t, 20*time.Second), "tcp", addr)
	expectError(t, err, "negotiate", ResultServerErrorResponse, "")
}

func TestDialServerClosesDuringNegotiation(t *testing.T) {
	addr := listen(t, func(conn net.Conn) {
		readRequest(t, conn)
	})
	_, err := encryptedDialer().DialContext(testContext(t, 20*time.Second), "tcp", addr)
	expectError(t, err, "negotiate", ResultUnexpectedEOF, "")
}

func TestDialServerUnexpectedResponse(t *testing.T) {
	addr := listen(t, func(conn net.Conn) {
		if readRequest(t, conn) {
			conn.Write([]byte("X"))
		}
	})
	_, err := encryptedDialer().DialContext(testContext(t, 20*time.Second), "tcp", addr)
	expectError(t, err, "negotiate", ResultUnexpectedResponse, "")
}

func TestDialConnectionRefused(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := listener.Addr().String()
	listener.Close()

	_, err = encryptedDialer().DialContext(testContext(t, 20*time.Second), "tcp", addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("DialContext to a closed port: %v, expected ECONNREFUSED", err)
	}
}

func TestResultText(t *testing.T) {
	if got := ResultServerDeclined.String(); got != "server declined GSSAPI encryption" {
		t.Errorf("ResultServerDeclined.String() = %q", got)
	}
	if got := ResultGSSFailure.Error(); got != "pggssenc: GSSAPI call failed (result 109)" {
		t.Errorf("ResultGSSFailure.Error() = %q", got)
	}
	if got := Version(); got == "" || strings.Count(got, ".") != 2 {
		t.Errorf("Version() = %q, expected MAJOR.MINOR.PATCH", got)
	}
}

func TestNegotiateExistingConnection(t *testing.T) {
	raw, err := net.Dial("tcp", tcpAddress())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn, err := encryptedDialer().Negotiate(testContext(t, 20*time.Second), raw)
	if err != nil {
		raw.Close()
		t.Fatalf("Negotiate: %v", err)
	}
	defer conn.Close()
	if conn.NetConn() != raw {
		t.Fatal("NetConn() is not the connection given to Negotiate")
	}
	frontend, _ := startSession(t, conn)
	rows := simpleQuery(t, frontend, ownGSSStatus)
	expected := "t|" + principal() + "|t"
	if len(rows) != 1 || rows[0] != expected {
		t.Fatalf("pg_stat_gssapi rows = %q, expected [%q]", rows, expected)
	}

	// On failure the caller still owns the connection: it is not closed.
	raw, err = net.Dial("tcp", tcpAddress())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	d := &Dialer{Host: "localhost", KrbSrvName: "nosuchservice", GSSEncMode: "require"}
	failed, err := d.Negotiate(testContext(t, 20*time.Second), raw)
	if failed != nil {
		t.Fatal("Negotiate returned a Conn on failure")
	}
	expectError(t, err, "negotiate", ResultGSSFailure, "nosuchservice/localhost@PGGSS.TEST")
	if err := raw.Close(); err != nil {
		t.Fatalf("closing the connection after a failed Negotiate: %v, expected nil (still open)", err)
	}
}
