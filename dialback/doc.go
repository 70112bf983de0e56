// Package dialback implements the cryptographic parts of Server Dialback
// (XEP-0220) with the key generation of XEP-0185.
//
// # Model
//
// Dialback proves that a server speaking for an originating domain O is
// the one DNS names as authoritative for O. The server for O (the
// initiating server) sends the receiving server R a key in
// <db:result from=O to=R>KEY</db:result>. R does not trust the key itself:
// it connects to O's authoritative server and asks, with
// <db:verify from=R to=O id=STREAMID>KEY</db:verify>, whether O issued
// that key for that stream. Only a server that knows O's dialback secret
// can answer "valid".
//
// Keys are therefore never stored: they are recomputed from a secret, so
// any node of an xmppedge deployment that shares the secret can answer
// any <db:verify/>, whichever node issued the key. The key is
//
//	hex(HMAC-SHA256(hex(SHA256(secret)), Receiving + " " + Originating + " " + StreamID))
//
// where the HMAC key is the 64-character lowercase hex string of the
// secret's digest (not the raw 32-byte digest: that variant does not
// interoperate with Prosody, ejabberd or Openfire).
//
// Security rests on three things this package provides:
//   - the secret: random, kept in a file only its owner can read
//     (LoadOrCreateSecret);
//   - stream ids that an attacker cannot predict and that never repeat
//     (NewStreamID), so a key observed on one stream is useless on
//     another;
//   - constant-time comparison of keys (Equal), so that answering
//     <db:verify/> leaks nothing about the right key through timing.
//
// The elements (Request, Answer, ErrorAnswer) are built here; the
// exchange itself (per-stream state, verification against the
// authoritative server) is the Dialback feature of internal/s2s.
package dialback
