package jid

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	mellium "mellium.im/xmpp/jid"
)

var fuzzSeeds = []string{
	"alice@company.test/phone-123",
	"MALLORY@Company.Test/Res",
	"ｍａｌｌｏｒｙ@company.test",
	"@company.test",
	"a b@x", `a"b@x`, "bobⅣ@x", "x/", "a@b@c", "a/b@c",
	"bücher.example", "BÜCHER.example", "xn--bcher-kva.example", "XN--BCHER-KVA.example.",
	"straße@x", "straße.de", "ΣΑΣ@x", "é@x", "e\u0301@x",
	"192.0.2.1", "01.2.3.4", "[2001:DB8::1]", "[::ffff:1.2.3.4]", "[fe80::1%25x]",
	"a..b", "a.", "a..", ".", "", "/", "@", "@/", "a@/", "ab--cd.x", "-a.x", "a-.x",
	"company.test\u3002", "a\u00adb.example", "u@x/\u00a0", "u@x/ ",
	"مثال.إختبار", "a\u200db@x",
	"a\xffb@x",
	strings.Repeat("a", 63) + "." + strings.Repeat("b", 63),
}

// FuzzFastPath proves the ASCII fast path returns exactly what the full
// preparation returns, wherever it answers.
func FuzzFastPath(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkFast(t, s)
		// Random bytes seldom look like a JID: also try s folded into
		// ASCII, where the fast path has something to say.
		b := []byte(s)
		for i := range b {
			b[i] &= 0x7F
		}
		checkFast(t, string(b))
	})
}

func checkFast(t *testing.T, s string) {
	fast, ok := prepareASCII(s)
	if !ok {
		return
	}
	full, err := prepareFull(s)
	if err != nil {
		t.Fatalf("%q: fast path accepted %+v, full preparation refused: %v", s, fast, err)
	}
	if fast != full {
		t.Fatalf("%q: fast %+v, full %+v", s, fast, full)
	}
}

// FuzzPrepare checks that Prepare never panics, that every error is an
// *Error naming a part, that every result obeys the limits, and that
// preparation is idempotent: Prepare(Prepare(x).String()) == Prepare(x).
func FuzzPrepare(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := Prepare(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%q: %v is not an *Error", s, err)
			}
			switch e.Part {
			case PartLocal, PartDomain, PartResource, PartJID:
			default:
				t.Fatalf("%q: unknown part %q", s, e.Part)
			}
			return
		}
		if j.Domain == "" || len(j.Domain) > maxPart || len(j.Local) > maxPart || len(j.Resource) > maxPart {
			t.Fatalf("%q: part lengths out of range: %+v", s, j)
		}
		again, err := Prepare(j.String())
		if err != nil {
			t.Fatalf("%q -> %q: second preparation failed: %v", s, j, err)
		}
		if again != j {
			t.Fatalf("not idempotent: %q -> %+v -> %+v", s, j, again)
		}
		if d, err := PrepareDomain(j.Domain); err != nil || d != j.Domain {
			t.Fatalf("%q: PrepareDomain(%q) = %q, %v", s, j.Domain, d, err)
		}
		// The A-label form names the same domain.
		a := j.DomainASCII()
		if d, err := PrepareDomain(a); a == "" || err != nil || d != j.Domain {
			t.Fatalf("%q: DomainASCII %q prepares to %q, %v; want %q", s, a, d, err, j.Domain)
		}
	})
}

// FuzzAgainstMellium compares with an independent RFC 7622 implementation,
// mellium.im/xmpp/jid: whatever Prepare accepts, mellium accepts with the
// same parts. Prepare is stricter (DNS label rules, numeric names, case
// folding, deviation characters, raw length), and writes IPv6 literals in
// RFC 5952 form where mellium keeps them as written, so the comparison
// brings mellium's IPv6 domain to that form first.
func FuzzAgainstMellium(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := Prepare(s)
		if err != nil {
			return
		}
		m, err := mellium.Parse(s)
		if err != nil {
			t.Fatalf("%q: Prepare accepted %+v, mellium refused: %v", s, j, err)
		}
		md := m.Domainpart()
		if strings.HasPrefix(md, "[") {
			if a, err := netip.ParseAddr(md[1 : len(md)-1]); err == nil {
				md = "[" + a.String() + "]"
			}
		}
		got := JID{m.Localpart(), md, m.Resourcepart()}
		if got != j {
			t.Fatalf("%q: Prepare %+v, mellium %+v", s, j, got)
		}
	})
}
