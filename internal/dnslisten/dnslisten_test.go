package dnslisten

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

func TestUDPAndTCP(t *testing.T) {
	// A TCP port taken by someone else, to make the TCP bind fail.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tests := []struct {
		name    string
		addr    string
		wantNet string // of the *Error; "-" when the bind succeeds
		wantMsg string
	}{
		{"system-chosen port", "127.0.0.1:0", "-", ""},
		{"not IP:PORT", "127.0.0.1", "", `address "127.0.0.1" is not IP:PORT: `},
		{"UDP cannot bind", "192.0.2.1:0", "udp", "cannot listen on udp 192.0.2.1:0: "},
		{"TCP port taken", taken.Addr().String(), "tcp", "cannot listen on tcp " + taken.Addr().String() + ": "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, ln, err := UDPAndTCP(context.Background(), tt.addr)
			if tt.wantNet == "-" {
				if err != nil {
					t.Fatalf("UDPAndTCP(%q): %v", tt.addr, err)
				}
				defer pc.Close()
				defer ln.Close()
				if u, l := pc.LocalAddr().(*net.UDPAddr).Port, ln.Addr().(*net.TCPAddr).Port; u != l || u == 0 {
					t.Errorf("UDP port %d, TCP port %d: want the same, non-zero", u, l)
				}
				return
			}
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("UDPAndTCP(%q) = %v, want an *Error", tt.addr, err)
			}
			if le.Net != tt.wantNet || le.Addr != tt.addr || le.Err == nil || !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Errorf("error %+v (%q), want Net %q and a message beginning %q", le, err, tt.wantNet, tt.wantMsg)
			}
			if pc != nil || ln != nil {
				t.Errorf("sockets returned with an error")
			}
		})
	}
}
