// Package natsstore is a certmagic Storage over a NATS JetStream
// key-value bucket, so that every node of an xmppedge cluster shares one
// set of ACME accounts, certificates and locks: one ACME order per domain
// for the whole cluster, and every node serves what any node obtained.
//
// # Keys
//
// certmagic names its items with slash-separated paths
// ("certificates/<issuer>/<domain>/<domain>.crt"). A NATS key is a
// dot-separated list of tokens from a small alphabet, so each path segment
// becomes one token, escaped: every byte outside [A-Za-z0-9_-] is written
// as "=XX" (its hex value), "=" included. The escaping is reversible and
// keeps the hierarchy, so List is a subject filter ("certificates.>").
// Items live under "data."; locks under "locks." (never listed).
//
// # Reads
//
// Load, Stat, Exists and Delete read a key from the bucket's stream
// leader (the STREAM.MSG.GET API), not with a direct get, which any
// replica answers, one behind an acknowledged write too: certmagic reads
// what was just written, by itself or by the node that held a lock before
// it (whether the certificate is already stored decides whether to order).
//
// # Locks
//
// Lock creates "locks.<name>" with a per-key TTL (Storage.LockTTL, default
// 2 minutes; the bucket allows per-message TTLs, which needs a NATS server
// ≥ 2.11) and keeps its revision: that revision is the fencing token.
// Create fails while another holder's key exists (or when another
// contender took the released key first), so Lock polls until it creates
// the key (released, or expired with a holder that died) or ctx ends.
// RenewLockLease re-publishes the key with a fresh TTL only if its
// revision is still ours (expected-last-subject-sequence); Unlock deletes
// it only if the revision is still ours. A holder whose lease expired and
// was taken over can therefore neither renew nor release the new holder's
// lock.
package natsstore
