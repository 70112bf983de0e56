package edge

import (
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// jidString must always equal JID.String(); it only avoids building it.
func TestJIDString(t *testing.T) {
	for _, sent := range []string{
		"alice@company.test/phone", "alice@company.test", "company.test", "company.test/res",
		"ALICE@company.test", "alice@COMPANY.test/phone", "ａｌｉｃｅ@company.test", "alice@company.test./r",
		"alice@bücher.example/r", "a@b/c/d", "a@b/", "a@company.test/phone-x",
	} {
		j, err := jid.Prepare(sent)
		if err != nil {
			continue
		}
		if got, want := jidString(j, sent), j.String(); got != want {
			t.Errorf("jidString(%q) = %q, want %q", sent, got, want)
		}
		p := policy.JIDOf(j, j.String())
		if p.Domain != j.DomainASCII() || p.Full[len(p.Full)-len(j.Resource):] != j.Resource {
			t.Errorf("policy.JIDOf(%q) = %+v", sent, p)
		}
	}
}

func FuzzJIDString(f *testing.F) {
	for _, s := range []string{"alice@company.test/phone", "ALICE@x", "x", "a@b/c", "ａ@b", "a@bücher.example/r", "a@b./c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sent string) {
		j, err := jid.Prepare(sent)
		if err != nil {
			return
		}
		if got, want := jidString(j, sent), j.String(); got != want {
			t.Fatalf("jidString(%q) = %q, want %q", sent, got, want)
		}
		p := policy.JIDOf(j, j.String())
		wantBare := j.Bare()
		if d := j.DomainASCII(); d != j.Domain {
			wantBare = d
			if j.Local != "" {
				wantBare = j.Local + "@" + d
			}
		}
		if p.Bare != wantBare || p.Domain != j.DomainASCII() {
			t.Fatalf("policy.JIDOf(%q) = %+v, want bare %q", sent, p, wantBare)
		}
	})
}

// A policy that strips children: a stanza carrying one is forwarded as a
// canonical re-serialisation without it and audited as modified; a stanza
// without one is forwarded byte for byte.
func TestPolicyStrip(t *testing.T) {
	env := newTestEnv(t)
	env.pol.strip = []policy.Child{{Name: "status", Namespace: "jabber:server"}}
	env.internal.setVerify(func(from, to, id, key string) bool { return true })
	partner := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
	env.res.set("partner.test", partner.addr(), true)
	p := authedInside(t, env, "partner.test")

	plain := "<presence from='alice@company.test/r' to='bob@partner.test' id='p1'><show>away</show><x xmlns=\"urn:example\" a='1'/></presence>"
	p.send(plain)
	if got := partner.expectStanza(t); got != plain {
		t.Fatalf("a stanza with nothing to strip: got %q, want it byte for byte %q", got, plain)
	}
	p.send("<presence from='alice@company.test/r' to='bob@partner.test' id='p2'><show>away</show><status>secret &amp; project</status><status xml:lang='de'>geheim</status><x xmlns='urn:example'>keep <b>this</b></x></presence>")
	got := partner.expectStanza(t, "id='p2'", "<show>away</show>", "<x xmlns='urn:example'>keep <b>this</b></x>")
	if strings.Contains(got, "status") || strings.Contains(got, "secret") || strings.Contains(got, "geheim") {
		t.Fatalf("stripped presence still carries its status: %q", got)
	}
	var rec *audit.Record
	for _, r := range env.aud.find("stanza", "allow") {
		if r.ID == "p2" {
			rec = &r
		}
	}
	if rec == nil || !rec.Modified || rec.Stripped.Values()[0] != "{jabber:server}status" || len(rec.Stripped.Values()) != 2 {
		t.Fatalf("audit record of the stripped presence: %+v", rec)
	}
	for _, r := range env.aud.find("stanza", "allow") {
		if r.ID == "p1" && r.Modified {
			t.Fatalf("the untouched presence is recorded as modified: %+v", r)
		}
	}
}

// TestInStanzaResetBoundsItsArrays: a pooled inStanza keeps the children
// arrays of an ordinary stanza for the next one, not those a stanza with
// thousands of children grew.
func TestInStanzaResetBoundsItsArrays(t *testing.T) {
	for _, tt := range []struct {
		children int
		kept     bool
	}{{3, true}, {maxPooledChildren, true}, {maxPooledChildren + 1, false}, {5000, false}} {
		st := &inStanza{}
		st.input.Children = make([]policy.Child, tt.children)
		st.content.Children = make([]xmlstream.Name, tt.children)
		st.reset()
		if kept := cap(st.input.Children) > 0 && cap(st.content.Children) > 0; kept != tt.kept {
			t.Errorf("%d children: arrays kept %v (caps %d, %d), want %v", tt.children, kept, cap(st.input.Children), cap(st.content.Children), tt.kept)
		}
		if len(st.input.Children) != 0 || len(st.content.Children) != 0 {
			t.Errorf("%d children: not emptied", tt.children)
		}
	}
}
