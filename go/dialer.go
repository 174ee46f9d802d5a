package pggssenc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// Dialer opens connections to a PostgreSQL server and negotiates GSSAPI
// encryption on them before the driver sends its StartupMessage. Its
// DialContext has the signature of pgconn.DialFunc (pgx), and with Dial and
// DialTimeout it implements lib/pq's Dialer and DialerContext interfaces.
//
// Parameters are applied in this order, later ones winning: the host of
// the dialed address (when it is a name, not an IP literal or a Unix
// socket path), Conninfo, then the fields below that are set. The library
// takes what is still unset from PGHOST, PGKRBSRVNAME, PGGSSENCMODE and
// PGGSSDELEGATION, then from libpq's defaults (krbsrvname "postgres",
// gssencmode "prefer", gssdelegation 0).
type Dialer struct {
	// Conninfo is a libpq connection string, in key=value form or as a
	// postgresql:// URI. Only host, krbsrvname, gssencmode, gssdelegation
	// and ccache are taken from it; other keys are ignored.
	Conninfo string

	// Host is the server's host name, used for the target service name
	// krbsrvname@Host. Set it when the dialed address is an IP address,
	// as it is when pgx resolves the host or lib/pq uses hostaddr.
	Host string

	// KrbSrvName is the Kerberos service name, "postgres" by default.
	KrbSrvName string

	// GSSEncMode is "disable", "prefer" or "require". Under "prefer", a
	// server that declines, or missing credentials, give a plaintext
	// connection (Conn.Encrypted reports false).
	GSSEncMode string

	// GSSDelegation, when true, forwards the client's credentials to the
	// server (gssdelegation=1). False leaves the setting to Conninfo and
	// the environment.
	GSSDelegation bool

	// CCache is a Kerberos credential cache name such as
	// "FILE:/tmp/krb5cc_1000"; the default cache when empty.
	CCache string

	// NetDialer opens the underlying connection; a zero net.Dialer when
	// nil.
	NetDialer *net.Dialer
}

// DialerFromConninfo returns a Dialer that takes its parameters from a
// libpq connection string. The string is checked with the library's own
// parser now, so a malformed string or an invalid value fails here with an
// *Error of code ResultInvalidParameter rather than at dial time.
func DialerFromConninfo(conninfo string) (*Dialer, error) {
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	defer h.free()
	if err := h.setConninfo(conninfo); err != nil {
		return nil, err
	}
	return &Dialer{Conninfo: conninfo}, nil
}

// Dial connects to addr on the named network and negotiates.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialTimeout is Dial with a time limit on connecting and negotiating.
func (d *Dialer) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, addr)
}

// DialContext connects to addr on the named network ("tcp" or "unix") and
// negotiates GSSAPI encryption. The returned net.Conn is a *Conn. ctx
// bounds both the connection and the negotiation.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	// Invalid parameters fail here, before a connection is opened.
	h, err := d.newHandle(hostName(network, addr))
	if err != nil {
		return nil, err
	}

	netDialer := d.NetDialer
	if netDialer == nil {
		netDialer = &net.Dialer{}
	}
	raw, err := netDialer.DialContext(ctx, network, addr)
	if err != nil {
		h.free()
		return nil, err
	}

	conn, err := negotiate(ctx, raw, h)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// Negotiate negotiates GSSAPI encryption on raw, a connection to a
// PostgreSQL server on which nothing has been sent yet. On success the
// returned Conn owns raw; on failure the caller still owns it. The host
// name must come from Host, Conninfo or PGHOST.
func (d *Dialer) Negotiate(ctx context.Context, raw net.Conn) (*Conn, error) {
	h, err := d.newHandle("")
	if err != nil {
		return nil, err
	}
	return negotiate(ctx, raw, h)
}

// hostName returns the host part of a TCP address when it is a name, and
// "" for IP literals and other networks: a Kerberos service principal
// names a host, so an IP address rarely matches one.
func hostName(network, addr string) string {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return ""
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	return host
}

// negotiate runs the handshake of h over raw. h belongs to the returned
// Conn, and is released on failure.
func negotiate(ctx context.Context, raw net.Conn, h *handle) (*Conn, error) {
	// When ctx ends, a deadline in the past ends a Read or Write blocked in
	// handshake. ctx.Err() is set before the function runs, so every I/O
	// failure it causes is reported as the context's error.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	err := handshake(h, raw)
	stopped := stop()
	if (err != nil || !stopped) && ctx.Err() != nil {
		// The context ended: its error explains an I/O failure, and the
		// deadline it set makes the connection unusable.
		err = fmt.Errorf("pggssenc: negotiate: %w", ctx.Err())
	}
	if err != nil {
		h.free()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return newConn(raw, h), nil
}

// newHandle creates a library handle with the Dialer's parameters.
func (d *Dialer) newHandle(defaultHost string) (*handle, error) {
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	if err := d.configure(h, defaultHost); err != nil {
		h.free()
		return nil, err
	}
	return h, nil
}

func (d *Dialer) configure(h *handle, defaultHost string) error {
	if defaultHost != "" {
		if err := h.setParam("host", defaultHost); err != nil {
			return err
		}
	}
	if d.Conninfo != "" {
		if err := h.setConninfo(d.Conninfo); err != nil {
			return err
		}
	}

	params := []struct{ key, value string }{
		{"host", d.Host},
		{"krbsrvname", d.KrbSrvName},
		{"gssencmode", d.GSSEncMode},
		{"ccache", d.CCache},
	}
	if d.GSSDelegation {
		params = append(params, struct{ key, value string }{"gssdelegation", "1"})
	}
	for _, param := range params {
		if param.value == "" {
			continue
		}
		if err := h.setParam(param.key, param.value); err != nil {
			return err
		}
	}
	return nil
}

// handshake drives pggss_conn_connect_poll until negotiation ends, moving
// bytes between the library's buffers and raw.
func handshake(h *handle, raw net.Conn) error {
	readBuf := make([]byte, networkReadSize)
	var out []byte
	// Both buffers carry handshake tokens, so they are zeroed before the
	// garbage collector can free them.
	defer func() {
		clear(readBuf)
		clear(out[:cap(out)])
	}()
	eofFed := false
	for {
		status, err := h.connectPoll()
		if err != nil {
			return err
		}
		out, err = h.takeOutput(out)
		if err != nil {
			return err
		}
		if len(out) > 0 {
			if _, err := raw.Write(out); err != nil {
				return fmt.Errorf("pggssenc: negotiate: %w", err)
			}
		}

		switch status {
		case pollingOK:
			return nil
		case pollingWriting:
			if len(out) == 0 {
				return &Error{Op: "negotiate", Code: ResultWouldBlock, Message: "the library asked to write, but no output was waiting to be sent"}
			}
		case pollingReading:
			if eofFed {
				return fmt.Errorf("pggssenc: negotiate: %w", io.ErrUnexpectedEOF)
			}
			n, err := raw.Read(readBuf)
			if feedErr := h.feed(readBuf[:n]); feedErr != nil {
				return feedErr
			}
			if errors.Is(err, io.EOF) {
				eofFed = true
				if feedErr := h.feedEOF(); feedErr != nil {
					return feedErr
				}
			} else if err != nil && n == 0 {
				return fmt.Errorf("pggssenc: negotiate: %w", err)
			}
		default:
			return &Error{Op: "negotiate", Code: ResultInvalidState, Message: fmt.Sprintf("unknown polling status %d", status)}
		}
	}
}
