package edge

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/policy"
)

// The relay's audit records, built in one place from what the relay knows
// (the stanza in flight, the session facts, the decision). The schema is
// audit.Record's (internal/audit/doc.go); the relay writes them through
// audit.Sink, so a second sink (a replicated log) needs no change here.

// stanzaRecord is the audit record of a stanza, with what the policy
// asked to keep.
func stanzaRecord(st *relayed, sessionID string, arrival Leg, decision, reason, revision, keep, body string) *audit.Record {
	return fillStanzaRecord(new(audit.Record), st, sessionID, arrival, decision, reason, revision, keep, body)
}

// fillStanzaRecord is stanzaRecord into r, a zeroed record.
func fillStanzaRecord(r *audit.Record, st *relayed, sessionID string, arrival Leg, decision, reason, revision, keep, body string) *audit.Record {
	*r = audit.Record{
		Event: audit.EventStanza, Session: sessionID, Leg: arrival.String(), Direction: string(direction(arrival)),
		From: st.from, To: st.to, Kind: st.kind, Type: st.typ, ID: st.id, Size: len(st.raw),
		Decision: decision, Reason: reason, PolicyRevision: revision,
	}
	if arrival == LegOutside {
		r.LocalDomain, r.RemoteDomain = st.toDomain, st.fromDomain
	} else {
		r.LocalDomain, r.RemoteDomain = st.fromDomain, st.toDomain
	}
	switch keep {
	case policy.AuditFull:
		r.Stanza = string(st.raw)
	case policy.AuditHash:
		sum := sha256.Sum256([]byte(body))
		r.BodySHA256 = hex.EncodeToString(sum[:])
	}
	return r
}

// stanzaRecordOf is the audit record of a stanza that went through the
// policy: the canonical addresses (and the ones sent, where they differ),
// the payload facts and what was stripped.
//
// r is the zeroed record to fill (recorder.newRecord).
func stanzaRecordOf(r *audit.Record, st *inStanza, out *relayed, d *policy.StanzaDecision, decision, body string) *audit.Record {
	fillStanzaRecord(r, out, st.session, st.leg, decision, d.Reason, d.Revision, d.Audit, body)
	if st.el.From != out.from {
		r.FromSent = st.el.From
	}
	if st.el.To != out.to {
		r.ToSent = st.el.To
	}
	r.Encryption = st.facts.Encryption
	if len(st.facts.FileTransfer) > 0 {
		ft := make([]string, 0, len(st.facts.FileTransfer))
		for _, t := range st.facts.FileTransfer {
			if t.Host != "" {
				ft = append(ft, t.Method+":"+t.Host)
			} else {
				ft = append(ft, t.Method)
			}
		}
		r.FileTransfer = audit.StringsOf(ft...)
	}
	if len(st.stripped) > 0 {
		r.Modified = true
		r.Stripped = audit.StringsOf(st.stripped...)
	}
	return r
}

// sessionRecord is the audit record of a session event: its domains, TLS
// and authentication as the policy saw them, and the decision.
func sessionRecord(event, sessionID string, leg Leg, in *policy.SessionInput, remoteAddr, decision, reason, revision string) *audit.Record {
	r := &audit.Record{
		Event: event, Session: sessionID, Leg: leg.String(),
		RemoteAddr: remoteAddr, Decision: decision, Reason: reason, PolicyRevision: revision,
	}
	if in != nil {
		r.Direction = string(in.Direction)
		r.LocalDomain, r.RemoteDomain = in.LocalDomain, in.RemoteDomain
		r.TLSVersion, r.TLSCipher = in.TLS.Version, in.TLS.Cipher
		r.Auth = in.Auth
		if in.TLS.Version != "" {
			r.PeerCert = "valid"
			if !in.TLS.PeerCertValid {
				r.PeerCert = in.TLS.PeerCertError
			}
		}
	}
	return r
}
