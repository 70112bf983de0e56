package edge

import (
	"context"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/policy"
)

// auditStage writes the stanza's record when the decision or the policy
// asks for one (a refusal, audit meta/hash/full, a stripped child). Fail
// closed: a stanza whose record cannot be written is bounced with
// internal-server-error and goes no further. The record's sequence number
// travels with the stanza: the router writes it to the peer only once the
// record is durable.
func auditStage(rec recorder, router *Router) stage[*inStanza] {
	return func(next stanzaHandler) stanzaHandler {
		return handlerFunc[*inStanza](func(ctx context.Context, st *inStanza) error {
			d, out := &st.decision, st.out
			if d.Audit == policy.AuditHash && !st.contentDone {
				fillContent(st.in, st) // the hash is of the bodies
			}
			if st.verdict == audit.DecisionAllow && d.Audit == policy.AuditNone && len(st.stripped) == 0 {
				return next.handle(ctx, st)
			}
			seq, err := rec.give(stanzaRecordOf(rec.newRecord(), st, out, d, st.verdict, st.in.Body))
			if err != nil {
				st.log.Error("AUDIT LOG NOT WRITABLE: stanza refused", "from", out.from, "to", out.to, "err", err)
				router.bounceUnaudited(out, st.leg.other(), stanza.InternalServerError, "the gateway cannot record this stanza; try again later")
				return nil
			}
			out.auditSeq = seq
			return next.handle(ctx, st)
		})
	}
}

// recorder writes audit records to the sink, timing them for the metrics.
type recorder struct {
	sink audit.Sink
	m    *metrics.Metrics
}

// record appends r; an error means it was not accepted (fail closed).
func (r recorder) record(rec *audit.Record) (uint64, error) {
	start := time.Now()
	seq, err := r.sink.Append(rec)
	r.m.AuditRecord(time.Since(start), err)
	return seq, err
}

// newRecord returns a zeroed record for give: the sink's own when it
// recycles records (audit.Recycler, as the file log does), so that the
// stanza path does not allocate one per stanza.
func (r recorder) newRecord() *audit.Record {
	if rc, ok := r.sink.(audit.Recycler); ok {
		return rc.NewRecord()
	}
	return new(audit.Record)
}

// give is record for a record from newRecord, which is the sink's after
// the call: the caller must not touch it, whether it failed or not.
func (r recorder) give(rec *audit.Record) (uint64, error) {
	rc, ok := r.sink.(audit.Recycler)
	if !ok {
		return r.record(rec)
	}
	start := time.Now()
	seq, err := rc.Give(rec)
	r.m.AuditRecord(time.Since(start), err)
	return seq, err
}

// refuser records and bounces the stanzas a stage stops before the policy
// (a malformed address, a rate over its limit).
type refuser struct {
	rec    recorder
	router *Router
}

// refuse bounces st with condition: the refusal is recorded first (with
// the addresses as sent where they differ), and the error stanza goes out
// once the record is durable. The stanza itself is never forwarded.
func (r *refuser) refuse(st *inStanza, from, to string, condition stanza.Condition, text string) {
	out := &relayed{
		raw: st.el.Raw, kind: st.el.Local, typ: strings.Clone(st.el.Type), id: strings.Clone(st.el.ID),
		from: from, to: to, fromDomain: st.fromDomain, toDomain: st.toDomain,
		ticket: st.ticket,
	}
	st.out = out
	rec := stanzaRecord(out, st.session, st.leg, audit.DecisionBounced, string(condition)+": "+text, "", policy.AuditMeta, "")
	out.raw = nil // the record has its size; the bounce is built from the fields
	if from != st.el.From {
		rec.FromSent = st.el.From
	}
	if to != st.el.To {
		rec.ToSent = st.el.To
	}
	seq, err := r.rec.record(rec)
	if err != nil {
		st.log.Error("AUDIT LOG NOT WRITABLE: stanza refused", "from", st.el.From, "to", st.el.To, "err", err)
		r.router.bounceUnaudited(out, st.leg.other(), stanza.InternalServerError, "the gateway cannot record this stanza; try again later")
		return
	}
	r.router.bounceAfter(out, st.leg.other(), condition, text, seq)
}
