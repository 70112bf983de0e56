// Package posture owns the TLS and authentication posture of partner
// sessions: the order of postures (Posture, Compare) and the best one
// seen per partner domain (Store), kept across restarts in a small JSON
// state file written atomically (beside the audit log).
//
// The order, weakest first, in three dimensions judged one by one:
//
//	TLS             no TLS < TLS 1.2 < TLS 1.3
//	authentication  dialback < dialback with a valid certificate < SASL EXTERNAL
//	DANE            without < with (the certificate matched DNSSEC-signed TLSA records)
//
// A session weaker than the best recorded for its partner in any
// dimension is a downgrade; one stronger in any dimension raises the
// record (each dimension keeps its best). The relay writes both to the
// audit log (posture.downgrade, posture.raised) and counts downgrades.
//
// The state file is what remembers; the audit log is the evidence. A
// state file that cannot be read stops the start (Open fails, naming the
// file and the fix): the gateway does not start forgetting what it has
// seen. A write that fails is returned to the caller to log: the posture
// stays in memory, and the audit records still hold it.
package posture
