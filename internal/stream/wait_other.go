//go:build !unix

package stream

import "net"

// awaitReadable is the idle wait of unix systems (wait_unix.go); elsewhere
// the read itself waits.
func awaitReadable(net.Conn) {}
