package pggssenc

/*
#include <stdlib.h>
#include "pggssenc.h"
*/
import "C"

import (
	"errors"
	"net"
	"strings"
	"sync"
	"unsafe"
)

// errWouldBlock reports that the library needs more network input (read)
// or that its output queue is full (write). It never reaches callers.
var errWouldBlock = errors.New("pggssenc: the library would block")

// Polling statuses of pggss_conn_connect_poll, with libpq's numbers.
const (
	pollingFailed  = C.PGGSS_POLLING_STATUS_FAILED
	pollingReading = C.PGGSS_POLLING_STATUS_READING
	pollingWriting = C.PGGSS_POLLING_STATUS_WRITING
	pollingOK      = C.PGGSS_POLLING_STATUS_OK
)

// handle owns one pggss_conn that uses the buffer transport. The library
// handle is not safe for concurrent use, so every call on it holds mu.
// Callers do their network I/O between calls, never while holding mu, so a
// goroutine blocked in Read does not stop a Write. After free, c is nil
// and every method reports net.ErrClosed.
type handle struct {
	mu sync.Mutex
	c  *C.pggss_conn
}

func newHandle() (*handle, error) {
	var c *C.pggss_conn
	if result := C.pggss_conn_new(&c); result != C.PGGSS_RESULT_OK {
		return nil, &Error{Op: "create connection", Code: Result(result)}
	}
	if result := C.pggss_conn_use_buffers(c); result != C.PGGSS_RESULT_OK {
		err := &Error{Op: "use buffer transport", Code: Result(result), Message: C.GoString(C.pggss_conn_error_message(c))}
		C.pggss_conn_free(c)
		return nil, err
	}
	return &handle{c: c}, nil
}

func (h *handle) free() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c != nil {
		C.pggss_conn_free(h.c)
		h.c = nil
	}
}

// lastErrorLocked returns the connection's last result and message as an
// *Error. h.mu must be held and h.c must not be nil.
func (h *handle) lastErrorLocked(op string) *Error {
	return &Error{
		Op:      op,
		Code:    Result(C.pggss_conn_last_result(h.c)),
		Message: C.GoString(C.pggss_conn_error_message(h.c)),
	}
}

// setParam sets one libpq parameter (host, krbsrvname, gssencmode,
// gssdelegation or ccache).
func (h *handle) setParam(key, value string) error {
	op := "set parameter " + key
	if strings.IndexByte(value, 0) >= 0 {
		return &Error{Op: op, Code: ResultInvalidParameter, Message: "the value contains a NUL byte"}
	}
	cKey := C.CString(key)
	defer C.free(unsafe.Pointer(cKey))
	cValue := C.CString(value)
	defer C.free(unsafe.Pointer(cValue))

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return net.ErrClosed
	}
	if C.pggss_conn_set_param(h.c, cKey, cValue) != C.PGGSS_RESULT_OK {
		return h.lastErrorLocked(op)
	}
	return nil
}

// setConninfo takes the parameters the library uses from a libpq
// connection string, with the library's own parser.
func (h *handle) setConninfo(conninfo string) error {
	const op = "parse connection string"
	if strings.IndexByte(conninfo, 0) >= 0 {
		return &Error{Op: op, Code: ResultInvalidParameter, Message: "the connection string contains a NUL byte"}
	}
	cConninfo := C.CString(conninfo)
	defer C.free(unsafe.Pointer(cConninfo))

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return net.ErrClosed
	}
	if C.pggss_conn_set_conninfo(h.c, cConninfo) != C.PGGSS_RESULT_OK {
		return h.lastErrorLocked(op)
	}
	return nil
}

// connectPoll advances negotiation and returns the polling status, with an
// *Error when it is pollingFailed.
func (h *handle) connectPoll() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return pollingFailed, net.ErrClosed
	}
	status := int(C.pggss_conn_connect_poll(h.c))
	if status == pollingFailed {
		return status, h.lastErrorLocked("negotiate")
	}
	return status, nil
}

// feed hands bytes received from the network to the library, which copies
// them.
func (h *handle) feed(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return net.ErrClosed
	}
	if C.pggss_conn_feed(h.c, (*C.uint8_t)(unsafe.Pointer(&data[0])), C.size_t(len(data))) != C.PGGSS_RESULT_OK {
		return h.lastErrorLocked("feed")
	}
	return nil
}

// feedEOF records that the network stream ended.
func (h *handle) feedEOF() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return net.ErrClosed
	}
	if C.pggss_conn_feed_eof(h.c) != C.PGGSS_RESULT_OK {
		return h.lastErrorLocked("feed end of stream")
	}
	return nil
}

// takeOutputLocked moves every byte waiting to be sent into buf, reusing
// its capacity, and returns the filled slice. h.mu must be held.
func (h *handle) takeOutputLocked(buf []byte) []byte {
	pending := int(C.pggss_conn_output_pending(h.c))
	if pending == 0 {
		return buf[:0]
	}
	if cap(buf) < pending {
		buf = make([]byte, pending)
	}
	buf = buf[:pending]
	taken := int(C.pggss_conn_take_output(h.c, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(pending)))
	return buf[:taken]
}

// takeOutput is takeOutputLocked for callers that do not hold h.mu.
func (h *handle) takeOutput(buf []byte) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return buf[:0], net.ErrClosed
	}
	return h.takeOutputLocked(buf), nil
}

// read copies plaintext into p, which must not be empty, and returns the
// count. It returns 0 with errWouldBlock when more network input is
// needed, with errEndOfStream when the server ended the stream, or with an
// *Error.
func (h *handle) read(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return 0, net.ErrClosed
	}
	n := int(C.pggss_conn_read(h.c, unsafe.Pointer(&p[0]), C.size_t(len(p))))
	switch {
	case n > 0:
		return n, nil
	case n == 0:
		return 0, errEndOfStream
	case C.pggss_conn_last_result(h.c) == C.PGGSS_RESULT_WOULD_BLOCK:
		return 0, errWouldBlock
	default:
		return 0, h.lastErrorLocked("read")
	}
}

// errEndOfStream reports the server's orderly end of stream from read.
var errEndOfStream = errors.New("pggssenc: end of stream")

// write offers p to the library and then moves all output into out. It
// returns the number of bytes of p reported as written (0 with
// errWouldBlock when the output queue was full), the output to send, and
// an *Error for a final failure.
func (h *handle) write(p []byte, out []byte) (int, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return 0, out[:0], net.ErrClosed
	}
	n := int(C.pggss_conn_write(h.c, unsafe.Pointer(&p[0]), C.size_t(len(p))))
	if n < 0 {
		if C.pggss_conn_last_result(h.c) != C.PGGSS_RESULT_WOULD_BLOCK {
			return 0, out[:0], h.lastErrorLocked("write")
		}
		return 0, h.takeOutputLocked(out), errWouldBlock
	}
	return n, h.takeOutputLocked(out), nil
}

func (h *handle) outcome() Outcome {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return OutcomePending
	}
	return Outcome(C.pggss_conn_outcome(h.c))
}

func (h *handle) encryptionInUse() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.c != nil && bool(C.pggss_conn_encryption_in_use(h.c))
}

func (h *handle) credentialsDelegated() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.c != nil && bool(C.pggss_conn_credentials_delegated(h.c))
}

func (h *handle) maxPlaintext() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return 0
	}
	return int(C.pggss_conn_max_plaintext(h.c))
}

func (h *handle) errorMessage() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return ""
	}
	return C.GoString(C.pggss_conn_error_message(h.c))
}

func (h *handle) clientPrincipal() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil {
		return "", net.ErrClosed
	}
	buf := make([]C.char, 256)
	var length C.size_t
	result := C.pggss_conn_client_principal(h.c, &buf[0], C.size_t(len(buf)), &length)
	if result == C.PGGSS_RESULT_BUFFER_TOO_SMALL {
		buf = make([]C.char, int(length)+1)
		result = C.pggss_conn_client_principal(h.c, &buf[0], C.size_t(len(buf)), &length)
	}
	if result != C.PGGSS_RESULT_OK {
		return "", &Error{Op: "client principal", Code: Result(result)}
	}
	return C.GoStringN(&buf[0], C.int(length)), nil
}
