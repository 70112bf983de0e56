package policy

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestNeedsPayloadFacts: NeedsPayloadFacts is true exactly when a rule
// reachable from the stanza decision reads encryption, file_transfer or
// body_is_fallback (or the whole input); NeedsContent stays about body,
// subject, thread, children and security_label.
func TestNeedsPayloadFacts(t *testing.T) {
	tests := []struct {
		name                string
		policy              string
		content, facts      bool
		keyedOnFacts        bool // the facts are content leaves of the stanza query
		stanzaWithFactCache bool // a second stanza with the same facts is answered from a cache
	}{
		{"header only", `decision := {"allow": input.kind != "iq"}`, false, false, false, true},
		{"body", `decision := {"allow": contains(input.body, "x") == false}`, true, false, false, true},
		{"encryption", `decision := {"allow": input.encryption == ""}`, false, true, true, true},
		{"file_transfer", `decision := {"allow": count([f | some f in input.file_transfer; f.method == "ibb"]) == 0}`, false, true, true, true},
		{"body_is_fallback", `decision := {"allow": input.body_is_fallback == false}`, false, true, true, true},
		{"through a function", `f(m) := m in {x.method | some x in input.file_transfer}
decision := {"allow": f("socks5") == false}`, false, true, true, true},
		{"facts and body", `decision := {"allow": xmppedge.contains_any(input.body, ["x"]) == false} if input.encryption == ""
default decision := {"allow": false}`, true, true, true, true},
		{"whole input", `x := input
decision := {"allow": x.kind != "iq"}`, true, true, true, false},
		{"constant", `decision := {"allow": true}`, false, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newTestEngine(t, map[string]string{"p.rego": "package xmppedge.stanza\n" + tt.policy + "\n"}, Config{})
			e.syncPrograms = true
			if e.NeedsContent() != tt.content || e.NeedsPayloadFacts() != tt.facts {
				t.Fatalf("NeedsContent %v NeedsPayloadFacts %v, want %v %v (use %+v)",
					e.NeedsContent(), e.NeedsPayloadFacts(), tt.content, tt.facts, e.current.Load().stanza.use)
			}
			q := &e.current.Load().stanza
			for _, lf := range q.leaves {
				if isContentLeaf(lf) {
					t.Errorf("content leaf %d in the cache key", lf)
				}
			}
			keyed := false
			for _, lf := range q.content {
				keyed = keyed || isPayloadFactLeaf(lf)
			}
			if keyed != tt.keyedOnFacts {
				t.Errorf("payload facts among the content leaves: %v, want %v (%v)", keyed, tt.keyedOnFacts, q.content)
			}
			ctx := testContext(t)
			in := StanzaInput{Direction: "outbound", Kind: "message", Encryption: EncryptionOMEMO,
				FileTransfer: []FileTransfer{{Method: TransferIBB}}, BodyIsFallback: true}
			e.DecideStanza(ctx, &in)
			if d := e.DecideStanza(ctx, &in); d.Cached != tt.stanzaWithFactCache {
				t.Errorf("second stanza with the same facts: cached = %v, want %v", d.Cached, tt.stanzaWithFactCache)
			}
		})
	}
	t.Run("shipped rules", func(t *testing.T) {
		e := shippedEngine(t, testData, Config{})
		if !e.NeedsPayloadFacts() || !e.NeedsContent() {
			t.Fatalf("NeedsPayloadFacts %v NeedsContent %v", e.NeedsPayloadFacts(), e.NeedsContent())
		}
	})
}

// TestPayloadFactsInput: the facts reach Rego under their JSON names, with
// their values, and the decision depends on them exactly: stanzas that
// differ only in a fact are never answered from each other's cache entry.
func TestPayloadFactsInput(t *testing.T) {
	pol := `package xmppedge.stanza
decision := {"allow": true, "reason": json.marshal([input.encryption, input.file_transfer, input.body_is_fallback])}
`
	for _, cache := range []int{0, -1} {
		e, _ := newTestEngine(t, map[string]string{"p.rego": pol}, Config{CacheSize: cache})
		e.syncPrograms = true
		ctx := testContext(t)
		base := StanzaInput{Direction: "outbound", Kind: "message", Body: "hi"}
		variants := []StanzaInput{base, base, base, base, base, base, base}
		variants[1].Encryption = EncryptionOMEMO
		variants[2].Encryption = EncryptionOTR
		variants[3].FileTransfer = []FileTransfer{{Method: TransferOOB, Host: "upload.company.test"}}
		variants[4].FileTransfer = []FileTransfer{{Method: TransferOOB, Host: "files.example.net"}}
		variants[5].FileTransfer = []FileTransfer{{Method: TransferJingle}, {Method: TransferSOCKS5}}
		variants[6].BodyIsFallback = true
		for round := range 2 {
			for i, in := range variants {
				ft := in.FileTransfer
				if ft == nil {
					ft = []FileTransfer{}
				}
				want, err := json.Marshal([]any{in.Encryption, ft, in.BodyIsFallback})
				if err != nil {
					t.Fatal(err)
				}
				// The Go JSON tags are the Rego names: the same document.
				d := e.DecideStanza(ctx, &in)
				if !sameJSON(t, d.Reason, string(want)) {
					t.Fatalf("cache %d round %d variant %d: reason %s, want %s", cache, round, i, d.Reason, want)
				}
				if wantCached := cache == 0 && round == 1; d.Cached != wantCached {
					t.Errorf("cache %d round %d variant %d: cached %v", cache, round, i, d.Cached)
				}
			}
		}
	}
}

// sameJSON reports whether two JSON texts are the same document (object
// keys in any order).
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}
