//go:build unix

package stream

import (
	"crypto/tls"
	"net"
	"syscall"
)

// awaitReadable blocks until the socket under c has bytes to read (or has
// ended or failed, or its read deadline passed), without reading them: it
// peeks. It is the idle stream's wait: parked here, a goroutine holds
// only a few frames of stack, where a read through crypto/tls holds about
// 2.4 KiB of them, more than the quarter of an 8 KiB stack below which
// the runtime shrinks a stack at a garbage collection. An idle stream's
// reader thus keeps 4 KiB of stack instead of 8.
//
// It may only be called when nothing is buffered above the socket that
// could be read without it: the scanner's buffer is empty (it was
// released), and crypto/tls has just returned a timeout from a read with
// no data, so that what it holds, at most part of a record, needs more
// bytes from the socket. Anything but "nothing yet" ends the wait; the
// read that follows reports errors, deadlines and the end of the stream.
func awaitReadable(c net.Conn) {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Read(peekReadable)
}

// peekReadable is the RawConn.Read callback of awaitReadable: true (done)
// unless the socket has nothing to read yet. MSG_PEEK leaves the byte for
// the real read.
func peekReadable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
}
