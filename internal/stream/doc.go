// Package stream is the XML stream layer of an s2s connection (RFC 6120
// §4): the stream header, typed stream errors, and [Conn], the connection
// type that owns the socket, the strict scanner (internal/xmlstream) and
// one writer goroutine (started for what is queued, gone while the stream
// is idle).
//
// # Writing
//
// Every byte goes through the writer goroutine of a Conn, in the order it
// was queued: [Conn.Send] queues and returns, [Conn.SendWait] queues and
// waits until what it queued is flushed. The writer coalesces what is
// queued into one flush. The backlog of queued bytes is bounded
// ([Options.MaxBacklog]): a peer that never reads cannot make it grow; over
// the bound the connection fails with [ErrBacklog].
//
// # STARTTLS
//
// [Conn.StartTLS] refuses when the scanner holds bytes past <starttls/> or
// <proceed/> (the STARTTLS-injection class, CVE-2011-0411), flushes what is
// queued, pauses the writer for the handshake and swaps the connection
// under it.
package stream
