package policy

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
)

func TestZZWhy(t *testing.T) {
	for _, name := range []string{"hidden else"} {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"stanza.rego": diffPolicies[name]})
		e, _ := New(testContext(t), Config{Rules: dir})
		l := e.current.Load()
		in := &StanzaInput{Direction: "outbound", Kind: "message", Body: "x"}
		pq, err := l.stanza.ppq.Partial(testContext(t), rego.EvalParsedInput(stanzaValue(in, l.stanza.need&^textFieldBits)), rego.EvalParsedUnknowns(contentUnknowns), rego.EvalTransaction(l.stanza.txn))
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range pq.Queries {
			t.Log("Q ", q)
		}
		for _, m := range pq.Support {
			t.Log("S ", m)
		}
	}
}
