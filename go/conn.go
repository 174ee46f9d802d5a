package pggssenc

/*
#include "pggssenc.h"
*/
import "C"

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is the result of negotiation (pggss_outcome).
type Outcome int

// Outcomes of a client connection.
const (
	OutcomePending        Outcome = C.PGGSS_OUTCOME_PENDING
	OutcomeEncrypted      Outcome = C.PGGSS_OUTCOME_ENCRYPTED
	OutcomeServerDeclined Outcome = C.PGGSS_OUTCOME_SERVER_DECLINED
	OutcomeNoCredentials  Outcome = C.PGGSS_OUTCOME_NO_CREDENTIALS
	OutcomeDisabled       Outcome = C.PGGSS_OUTCOME_DISABLED
	OutcomeFailed         Outcome = C.PGGSS_OUTCOME_FAILED
)

func (o Outcome) String() string {
	switch o {
	case OutcomePending:
		return "pending"
	case OutcomeEncrypted:
		return "encrypted"
	case OutcomeServerDeclined:
		return "server declined"
	case OutcomeNoCredentials:
		return "no credentials"
	case OutcomeDisabled:
		return "disabled"
	case OutcomeFailed:
		return "failed"
	default:
		return "unknown outcome"
	}
}

// networkReadSize is the size of one read from the underlying connection.
// A GSSAPI packet is at most 16384 bytes, so one read can carry several.
const networkReadSize = 64 * 1024

// Conn is a net.Conn that carries the PostgreSQL protocol through a
// negotiated pggssenc connection. Read returns decrypted bytes and Write
// encrypts; after a fallback to plaintext (gssencmode=prefer) bytes pass
// through unchanged. Create one with Dialer.DialContext or
// Dialer.Negotiate.
//
// The library runs without I/O of its own (pggss_conn_use_buffers): Conn
// reads and writes the underlying net.Conn itself, so deadlines and
// cancellation work as they do for that connection, through Go's network
// poller. One Read and one Write may run at the same time from different
// goroutines; concurrent Reads, and concurrent Writes, are serialized.
type Conn struct {
	raw net.Conn
	h   *handle

	// notice is the library's message about a fallback to plaintext,
	// captured when negotiation ended.
	notice string

	readMu  sync.Mutex
	readBuf []byte
	eofFed  bool

	writeMu  sync.Mutex
	writeBuf []byte
	// writeErr is the first error of a Write that failed after the library
	// had accepted bytes, which leaves the stream unusable for writing.
	writeErr error

	// writeDeadline mirrors the underlying connection's write deadline,
	// so that a Write past it fails before the library accepts any byte.
	writeDeadline atomic.Pointer[time.Time]

	freeOnce sync.Once
}

func newConn(raw net.Conn, h *handle) *Conn {
	c := &Conn{raw: raw, h: h}
	if !h.encryptionInUse() {
		c.notice = h.errorMessage()
	}
	// A Conn dropped without Close still releases the library handle.
	runtime.AddCleanup(c, func(h *handle) { h.free() }, h)
	return c
}

// Read reads decrypted bytes. It reads the underlying connection only when
// the library has no complete packet buffered, so a read deadline fails it
// only then. Errors are the underlying connection's (a timeout matches
// os.ErrDeadlineExceeded), io.EOF at the server's orderly end of stream,
// or an *Error from the library, after which the stream is unusable.
func (c *Conn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}

	for {
		n, err := c.h.read(p)
		switch {
		case err == nil:
			return n, nil
		case err == errEndOfStream:
			return 0, io.EOF
		case errors.Is(err, net.ErrClosed):
			return 0, c.opError("read", err)
		case err != errWouldBlock:
			return 0, err
		case c.eofFed:
			// The library still requests bytes after the stream ended.
			return 0, io.ErrUnexpectedEOF
		}

		if err := c.receive(); err != nil {
			return 0, err
		}
	}
}

// receive reads once from the underlying connection and feeds the library.
func (c *Conn) receive() error {
	if c.readBuf == nil {
		c.readBuf = make([]byte, networkReadSize)
	}
	n, err := c.raw.Read(c.readBuf)
	if feedErr := c.h.feed(c.readBuf[:n]); feedErr != nil {
		return c.opError("read", feedErr)
	}
	switch {
	case err == io.EOF:
		c.eofFed = true
		if feedErr := c.h.feedEOF(); feedErr != nil {
			return c.opError("read", feedErr)
		}
		return nil
	case n > 0:
		// Data came with an error: the next read of the connection
		// returns the error again once the data is consumed.
		return nil
	default:
		return err
	}
}

// Write encrypts p and sends it. It returns len(p) or an error. A write
// deadline that has passed fails Write before any byte is accepted, and
// the connection stays usable. Any other failure (including a deadline
// that expires while sending) may leave part of an encrypted packet on the
// wire, so every later Write returns the same error, as crypto/tls does.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	if len(p) == 0 {
		return 0, nil
	}
	if deadline := c.writeDeadline.Load(); deadline != nil && !deadline.IsZero() && !time.Now().Before(*deadline) {
		return 0, c.opError("write", os.ErrDeadlineExceeded)
	}

	written := 0
	for written < len(p) {
		n, out, err := c.h.write(p[written:], c.writeBuf)
		c.writeBuf = out[:0]
		switch {
		case errors.Is(err, net.ErrClosed):
			c.writeErr = c.opError("write", err)
			return written, c.writeErr
		case err != nil && err != errWouldBlock:
			c.writeErr = err
			return written, err
		case n == 0 && len(out) == 0:
			// Without output to send, calling again would not progress.
			c.writeErr = &Error{Op: "write", Code: ResultWouldBlock, Message: "the library accepted no bytes and had no output waiting to be sent"}
			return written, c.writeErr
		}

		if len(out) > 0 {
			if _, err := c.raw.Write(out); err != nil {
				c.writeErr = err
				return written + n, err
			}
		}
		written += n
	}
	return written, nil
}

// Close closes the underlying connection, which ends a Read or Write
// blocked on it, and releases the library handle.
func (c *Conn) Close() error {
	err := c.raw.Close()
	c.freeOnce.Do(c.h.free)
	return err
}

// LocalAddr returns the underlying connection's local address.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the underlying connection's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying
// connection.
func (c *Conn) SetDeadline(t time.Time) error {
	c.writeDeadline.Store(&t)
	return c.raw.SetDeadline(t)
}

// SetReadDeadline sets the underlying connection's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	return c.raw.SetReadDeadline(t)
}

// SetWriteDeadline sets the underlying connection's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Store(&t)
	return c.raw.SetWriteDeadline(t)
}

// NetConn returns the underlying connection. Reading or writing it
// directly corrupts the encrypted stream.
func (c *Conn) NetConn() net.Conn { return c.raw }

// Encrypted reports whether the connection is GSSAPI-encrypted
// (pggss_conn_encryption_in_use); false after a fallback to plaintext.
func (c *Conn) Encrypted() bool { return c.h.encryptionInUse() }

// Outcome returns how negotiation ended.
func (c *Conn) Outcome() Outcome { return c.h.outcome() }

// Notice returns the library's reason for a fallback to plaintext under
// gssencmode=prefer, such as missing credentials; "" for an encrypted
// connection.
func (c *Conn) Notice() string { return c.notice }

// ClientPrincipal returns the connection's own Kerberos principal, such as
// "alice@EXAMPLE.COM". It fails with ResultInvalidState when the
// connection is not encrypted.
func (c *Conn) ClientPrincipal() (string, error) { return c.h.clientPrincipal() }

// MaxPlaintext returns the largest plaintext one GSSAPI packet carries; 0
// when the connection is not encrypted.
func (c *Conn) MaxPlaintext() int { return c.h.maxPlaintext() }

// CredentialsDelegated reports whether the client's credentials were
// delegated to the server (gssdelegation=1 and a forwardable ticket).
func (c *Conn) CredentialsDelegated() bool { return c.h.credentialsDelegated() }

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.raw.LocalAddr().Network(), Source: c.raw.LocalAddr(), Addr: c.raw.RemoteAddr(), Err: err}
}
