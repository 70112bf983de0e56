// Package jsaudit is the replicated audit log of an xmppedge cluster: an
// [audit.Sink] over a NATS JetStream stream, and readers that take the
// records back out of it (to verify, query or export them as files).
//
// # Model
//
// All nodes share one stream (default XMPPEDGE_AUDIT) on the subjects
// xmppedge.audit.>, with file storage, Config.Replicas copies, deletes and
// purges denied, records dropped by age only (Config.Retention) and a
// duplicate window. Each node writes only to its own subject,
// xmppedge.audit.<node>, and keeps its own hash chain there: every message
// is one record, and its data is, byte for byte, the line the file log
// ([audit.Log]) would write for it (made by [audit.Chain]: seq per node,
// node, prev, hash; optionally HMAC-keyed). Writing one node's messages
// into a file, in order, gives a file the file verifier ([audit.Verify])
// accepts: see [Export].
//
// # Writing: group commit as atomic batches
//
// [Sink.Append] chains and encodes the record and queues it; it never
// waits for the network. One publisher goroutine takes whatever is queued
// (at most 1000 records) and publishes it as one JetStream atomic batch
// (Nats-Batch-Id / -Sequence / -Commit): the stream stores all of the
// batch or none of it. Every message carries the record hash as its
// Nats-Msg-Id, and the first one Nats-Expected-Last-Subject-Sequence, the
// stream sequence of the node's last stored record: a second or stale
// writer on the subject is refused, and a batch cannot be stored twice.
// Records that arrive while a batch is in flight form the next one. (A
// JetStream stream refuses a second message with an expected-sequence
// header for a subject whose previous message is not yet applied, so
// records cannot be pipelined one by one; an atomic batch is the one way
// to have many records per round trip and keep every one guarded.)
//
// In sync durability (the default) [Sink.WaitDurable] returns once the
// batch holding the record is acknowledged by the stream, i.e. stored by
// a quorum of its replicas; the relay forwards a stanza only then. In
// async durability it returns at once (nil, or the failure).
//
// What "stored" means is the server's. With replicas, a batch is
// acknowledged once a quorum of servers has it in its store; nats-server
// fsyncs its stores on its own interval (sync_interval, default 2
// minutes) unless configured with sync_interval "always". So a record
// survives the loss of a minority of servers at once, not a power cut of
// all of them within that interval. This differs from the file log, which
// fsyncs each batch before WaitDurable returns. A single server (R1)
// stages each atomic batch in a small file store of its own that it
// fsyncs before the commit: durable, but slower per batch than a
// three-server cluster on fast links (BenchmarkAppendSync: ~5 ms per
// batch on R1 against ~0.4 ms on R3 over loopback).
//
// # Failure: fail closed, resume by itself
//
// When a batch is not acknowledged (no quorum, no leader, timeout, lost
// connection) the sink is failed, exactly as the file log is when the
// disk is full: [Sink.Healthy] returns the error, [Sink.Append] refuses
// (wrapping [audit.ErrUnavailable]) and every WaitDurable of a record not
// yet stored returns the error. The publisher keeps the batch. Every
// Config.RetryInterval it reads the last record of the node's subject
// from the stream leader and compares it with its chain: if the batch is
// there (its acknowledgement was lost) it counts as stored; if the
// stream's head is the record before the batch, it publishes the same
// records again (same message ids, same expected sequence); anything else
// means another writer wrote to the subject, and the sink stays failed
// with an error that says so. Once a batch is stored the sink is healthy
// again and writes a log.resumed record naming the
// records that were stored late. There is never a gap or a duplicate in
// a node's chain.
//
// # Start
//
// [Open] creates the stream or updates its configuration, then resumes
// the node's chain from the last message on its subject (a restarted node
// continues its chain; a last record that does not verify with the
// configured key stops the start). Before a cluster has elected a leader
// the first JetStream calls block until their deadline, so Open retries
// them with short per-attempt timeouts until its context ends.
//
// # Checkpoints
//
// Every Config.CheckpointInterval (default 60 s) the sink appends an
// audit.checkpoint record to its own chain whose heads member lists every
// node's chain head as the stream holds it ("<node> <seq> <hash>"): one
// record, covered by this node's chain, that anchors all chains at a
// moment. Copy checkpoints out of the cluster (and use an HMAC key) to
// make the anchors worth more than the stream's own access control.
//
// # Limits
//
// Denying deletes and purges in the stream configuration is not WORM:
// whoever may change the stream configuration can lift it. Restrict the
// stream-configuration API with NATS accounts and permissions. The stream
// needs atomic batch publishing (nats-server 2.12 or later).
package jsaudit
