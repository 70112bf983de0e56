// Package replay re-decides recorded traffic with a candidate policy: it
// reads audit records (internal/audit), rebuilds from each session.auth
// and stanza record the decision input the relay built (with the shared
// constructors of package policy), asks the candidate policy, and reports
// per partner domain and direction which decisions would change — newly
// denied, newly allowed — with a few example records each.
//
// Which records are decisions: a session.auth or stanza record with a
// policy_revision (the relay writes one on every policy decision) and the
// decision allow, deny or would-deny. Everything else — a stanza bounced
// before the policy (a malformed address, a rate) or undeliverable, a
// session refused by authentication, the second session.auth record a
// DANE dialback writes — is counted as skipped, by event and decision.
//
// What a record cannot give back: the content of a stanza not audited in
// full (audit meta or hash), and a session's peer_cert_issuer. A stanza
// without content is decided on its metadata (and the payload facts the
// record holds); a refusal that the candidate policy allows on metadata
// alone, when that policy reads content, is "unjudged" — the refusal may
// have been for the content — not "newly allowed". A stanza allowed with
// audit none has no record and is not replayed. Differences in what an
// allowed stanza would have stripped are not compared.
//
// The cmd/xmppedge command `policy replay` wraps Run; docs/replay.md is
// the user's guide.
package replay
