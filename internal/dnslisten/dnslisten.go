// Package dnslisten owns the binding of a DNS server's two sockets: a UDP
// socket and a TCP listener on the same address and port. It is a leaf:
// the internal DNS responder (internal/dnsresponder) and the test DNS
// server (internal/resolve/resolvetest) both use it.
package dnslisten

import (
	"context"
	"fmt"
	"net"
	"strconv"
)

// attempts bounds the tries to find a port free for both UDP and TCP when
// the port is chosen by the system (port 0).
const attempts = 10

// Error says which step of UDPAndTCP failed.
type Error struct {
	// Net is "udp" or "tcp" for the socket that could not be bound, ""
	// when Addr is not IP:PORT.
	Net  string
	Addr string
	Err  error
}

func (e *Error) Error() string {
	if e.Net == "" {
		return fmt.Sprintf("address %q is not IP:PORT: %v", e.Addr, e.Err)
	}
	return fmt.Sprintf("cannot listen on %s %s: %v", e.Net, e.Addr, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// UDPAndTCP binds UDP and TCP to the same address addr ("IP:PORT"). With
// port 0 the UDP port is chosen first and TCP takes the same one; when TCP
// cannot, it tries again a few times with a new UDP port. A failure is an
// *Error.
func UDPAndTCP(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, &Error{Addr: addr, Err: err}
	}
	var lc net.ListenConfig
	var lastErr error
	for range attempts {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, &Error{Net: "udp", Addr: addr, Err: err}
		}
		bound := net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		ln, err := lc.Listen(ctx, "tcp", bound)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, &Error{Net: "tcp", Addr: addr, Err: lastErr}
}
