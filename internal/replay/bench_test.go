package replay

import (
	"fmt"
	"testing"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// BenchmarkReplay replays stanzas of a hundred users through the shipped
// rules: metadata records (mostly answered from the decision cache) and
// full records (parsed and decided with their content).
func BenchmarkReplay(b *testing.B) {
	for _, full := range []bool{false, true} {
		b.Run(fmt.Sprintf("full=%v", full), func(b *testing.B) {
			r := New(shippedEngine(b, dataWithPartner), 3)
			recs := recorded()
			ctx := testContext(b)
			for _, rec := range recs[:2] {
				if err := r.Replay(ctx, rec); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				rec := &audit.Record{Event: audit.EventStanza, Session: "in2", Leg: "inside", Direction: "outbound",
					LocalDomain: "company.test", RemoteDomain: "partner.test", Seq: uint64(i),
					From: fmt.Sprintf("user%d@company.test/r", i%100), To: "alice@partner.test", Kind: "message", Type: "chat",
					Decision: audit.DecisionAllow, PolicyRevision: "r1"}
				if full {
					rec.Stanza = fmt.Sprintf(`<message from='%s' to='alice@partner.test' type='chat'><body>status report %d</body></message>`, rec.From, i)
				}
				if err := r.Replay(ctx, rec); err != nil {
					b.Fatal(err)
				}
			}
			if rep := r.Report(); rep.Changed() != 0 || rep.Stanzas != b.N {
				b.Fatalf("%d changed, %d stanzas replayed of %d", rep.Changed(), rep.Stanzas, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
