// Package loadgen is the engine of xmppedge-load: it opens server-to-server
// streams to an XMPP server (a gateway or any server) as one or more fake
// domains, sends stamped stanzas at a target rate or as fast as possible,
// receives them back — as the server they are relayed to (s2s) or as
// client users of the receiving server (c2s) — and reports throughput,
// latency percentiles, losses and the CPU time of given processes.
//
// # The parts
//
//   - The sending side (sender.go) is the initiating role of internal/s2s:
//     s2s.Open, then Stream.Authenticate with dialback (the key computed
//     with the run's own secret) or SASL EXTERNAL (a client certificate).
//   - The listener (listener.go) is the receiving role, s2s.Receive: it is
//     the authoritative server of the fake domains (it answers db:verify
//     with the run's secret, so the target's dialback verification
//     succeeds when DNS points the fake domains at it), and in s2s
//     receiving mode the server the target relays to. As a receiver it
//     accepts every dialback key and every client certificate: it
//     measures, it is no security boundary.
//   - The c2s receiver (c2s.go) is a minimal client: STARTTLS, SASL PLAIN,
//     resource binding, then it only reads.
//   - Every stanza carries its stamp in its id (stamp.go): the run, a
//     sequence number and the send time as an offset on the process's
//     monotonic clock, so latency is send to receive on one clock.
//   - Latencies are kept whole and sorted at the end (stats.go): the
//     percentiles are exact (nearest rank).
//   - With process ids, the CPU time (utime+stime from /proc/PID/stat) of
//     each process during the measured phase is reported per received
//     stanza (cpu.go).
//
// Run (run.go) ties them: listener, receivers, sending streams, a warm-up
// stanza per stream (which also sets up the target's onward streams), the
// measured phase with a progress line per second, the drain, the Summary.
package loadgen
