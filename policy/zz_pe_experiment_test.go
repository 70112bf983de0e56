package policy

import (
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

func TestZZPE(t *testing.T) {
	e := shippedEngine(t, testData, Config{})
	l := e.current.Load()
	_ = l
	src, err := loadFiles("../rules", nil, false)
	if err != nil { t.Fatal(err) }
	_, err = compileModules(src.modules)
	if err != nil { t.Fatal(err) }
	src2 := e
	_ = src2
	ctx := testContext(t)
	// reuse engine store via prepare? build anew
	s, _ := loadFiles("../rules", nil, false)
	_ = s
	in := StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", From: jid("alice@company.test/a"), To: jid("bob@partner.test/x"), Body: "x", SecurityLabel: &SecurityLabel{Marking: "Secret"}}
	need := l.stanza.need &^ (1<<7 | 1<<8 | 1<<9)
	opts := []func(*rego.Rego){
		rego.Query(stanzaDecisionRef.String()),
		rego.Compiler(l.compiler),
		rego.Store(l.store),
		rego.Unknowns([]string{"input.body", "input.subject", "input.thread"}),
		rego.ParsedInput(stanzaValue(&in, need)),
	}
	opts = append(opts, l.builtins.regoOptions()...)
	pq, err := rego.New(opts...).Partial(ctx)
	if err != nil { t.Fatal(err) }
	for _, q := range pq.Queries { fmt.Println("QUERY:", q) }
	for _, m := range pq.Support { fmt.Println("SUPPORT:", m) }
	_ = ast.String("")
}
