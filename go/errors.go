package pggssenc

/*
#include "pggssenc.h"
*/
import "C"

import "fmt"

// Result is a pggss_result code of the C library. Codes below 100 concern
// the call itself; codes from 100 up report what happened on the
// connection. A Result is also an error value, so that
// errors.Is(err, ResultServerDeclined) matches an *Error with that code.
type Result uint32

// Result codes, with the numbers of include/pggssenc.h.
const (
	ResultOK                   Result = C.PGGSS_RESULT_OK
	ResultNullParameter        Result = C.PGGSS_RESULT_NULL_PARAMETER
	ResultInvalidParameter     Result = C.PGGSS_RESULT_INVALID_PARAMETER
	ResultPanic                Result = C.PGGSS_RESULT_PANIC
	ResultInvalidState         Result = C.PGGSS_RESULT_INVALID_STATE
	ResultBufferTooSmall       Result = C.PGGSS_RESULT_BUFFER_TOO_SMALL
	ResultWouldBlock           Result = C.PGGSS_RESULT_WOULD_BLOCK
	ResultIO                   Result = C.PGGSS_RESULT_IO
	ResultServerDeclined       Result = C.PGGSS_RESULT_SERVER_DECLINED
	ResultServerErrorResponse  Result = C.PGGSS_RESULT_SERVER_ERROR_RESPONSE
	ResultNoCredentials        Result = C.PGGSS_RESULT_NO_CREDENTIALS
	ResultUnexpectedResponse   Result = C.PGGSS_RESULT_UNEXPECTED_RESPONSE
	ResultUnexpectedEOF        Result = C.PGGSS_RESULT_UNEXPECTED_EOF
	ResultPlaintextInjection   Result = C.PGGSS_RESULT_PLAINTEXT_INJECTION
	ResultPacketTooLarge       Result = C.PGGSS_RESULT_PACKET_TOO_LARGE
	ResultEmptyPacket          Result = C.PGGSS_RESULT_EMPTY_PACKET
	ResultGSSFailure           Result = C.PGGSS_RESULT_GSS_FAILURE
	ResultServicesNotGranted   Result = C.PGGSS_RESULT_SERVICES_NOT_GRANTED
	ResultNoConfidentiality    Result = C.PGGSS_RESULT_NO_CONFIDENTIALITY
	ResultRetryTooShort        Result = C.PGGSS_RESULT_RETRY_TOO_SHORT
	ResultHostMissing          Result = C.PGGSS_RESULT_HOST_MISSING
	ResultTooManyRounds        Result = C.PGGSS_RESULT_TOO_MANY_ROUNDS
	ResultInvalidStartupPacket Result = C.PGGSS_RESULT_INVALID_STARTUP_PACKET
)

// String returns the library's short description of the code, such as
// "server declined GSSAPI encryption", from pggss_result_text.
func (r Result) String() string {
	var buf [128]C.char
	full := C.pggss_result_text(C.uint32_t(r), &buf[0], C.size_t(len(buf)))
	if int(full) < len(buf) {
		return C.GoString(&buf[0])
	}
	text := make([]C.char, int(full)+1)
	C.pggss_result_text(C.uint32_t(r), &text[0], C.size_t(len(text)))
	return C.GoString(&text[0])
}

// Error returns the same text as String, so that a Result can be the
// target of errors.Is.
func (r Result) Error() string {
	return fmt.Sprintf("pggssenc: %s (result %d)", r.String(), uint32(r))
}

// Error is a failure reported by the C library: the operation, the
// pggss_result code and the connection's error message, which carries the
// GSSAPI major and minor status text when GSSAPI failed.
type Error struct {
	Op      string // "negotiate", "read", "write", "set parameter", ...
	Code    Result
	Message string
}

func (e *Error) Error() string {
	message := e.Message
	if message == "" {
		message = e.Code.String()
	}
	return fmt.Sprintf("pggssenc: %s: %s (result %d)", e.Op, message, uint32(e.Code))
}

// Is reports whether target is the Result code of e.
func (e *Error) Is(target error) bool {
	code, ok := target.(Result)
	return ok && code == e.Code
}

// Version returns the C library's version, such as "0.1.0".
func Version() string {
	return C.GoString(C.pggss_version())
}
