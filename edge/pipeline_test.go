package edge

import (
	"testing"

	"github.com/xmppedge/xmppedge/internal/jid"
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
		p := policyJID(j, j.String())
		if p.Domain != j.DomainASCII() || p.Full[len(p.Full)-len(j.Resource):] != j.Resource {
			t.Errorf("policyJID(%q) = %+v", sent, p)
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
		p := policyJID(j, j.String())
		wantBare := j.Bare()
		if d := j.DomainASCII(); d != j.Domain {
			wantBare = d
			if j.Local != "" {
				wantBare = j.Local + "@" + d
			}
		}
		if p.Bare != wantBare || p.Domain != j.DomainASCII() {
			t.Fatalf("policyJID(%q) = %+v, want bare %q", sent, p, wantBare)
		}
	})
}
