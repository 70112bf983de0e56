// Package archive turns audit records into what mail archivers and
// auditors ingest: one RFC 5322 message (.eml) per message stanza the
// policy audited in full, the other records as JSON Lines (the audit
// log's own lines, still verifiable), and a manifest that ties every
// exported file to its place in the verified hash chain.
//
// It owns the stanza-to-message parser ([ParseStanza]), the EML writer
// ([WriteEML]) and an export folder ([Start], [Export]); reading and
// verifying the log is internal/audit's, the command line is
// cmd/xmppedge's (`xmppedge audit export -format eml|jsonl`). The user
// guide is docs/export.md.
//
// Every header of an .eml is 7-bit ASCII whatever the stanza holds: text
// from the stanza and the record (JIDs, thread, subject, id, reason) is
// written as is only when it is printable ASCII, else as RFC 2047 encoded
// words, so that a CR, LF or header text inside a stanza stays inside its
// header's value.
package archive
