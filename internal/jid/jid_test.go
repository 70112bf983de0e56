package jid

import (
	"errors"
	"strings"
	"testing"
)

func TestPrepare(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name string
		in   string
		want string // canonical String(); "" when an error is expected
		part string // Error.Part when an error is expected
	}{
		// The hostile cases that started this package.
		{"fullwidth localpart", "ｍａｌｌｏｒｙ@company.test", "mallory@company.test", ""},
		{"upper case local and domain, resource kept", "MALLORY@Company.Test/Res", "mallory@company.test/Res", ""},
		{"fullwidth domain", "mallory@ｃｏｍｐａｎｙ.ｔｅｓｔ", "mallory@company.test", ""},
		{"empty localpart", "@company.test", "", PartLocal},
		{"1024-octet localpart", long(1024) + "@x", "", PartLocal},
		{"1023-octet localpart", long(1023) + "@x", long(1023) + "@x", ""},
		{"space in localpart", "a b@x", "", PartLocal},
		{"quote in localpart", `a"b@x`, "", PartLocal},
		{"excluded chars", "a<b@x", "", PartLocal},
		{"fullwidth at sign maps to excluded @", "a＠b@x", "", PartLocal},
		{"compatibility char (PRECIS disallows, nodeprep would map to bobiv)", "bobⅣ@x", "", PartLocal},
		{"ligature", "ﬁle@x", "", PartLocal},
		{"sharp s (nodeprep folds to ss)", "straße@x", "", PartLocal},
		{"capital sharp s", "STRAẞE@x", "", PartLocal},
		{"final sigma", "λόγος@x", "", PartLocal},
		{"greek upper case folds to sigma", "ΣΑΣ@x", "σασ@x", ""},
		{"ZWJ in localpart", "क्\u200dष@x", "", PartLocal},
		{"Cherokee", "Ꭰ@x", "", PartLocal},
		{"accented, composed", "e\u0301lodie@x", "élodie@x", ""},
		{"accented upper", "ÉLODIE@x", "élodie@x", ""},
		{"control char in localpart", "a\x01b@x", "", PartLocal},
		{"invalid UTF-8 in localpart", "a\xffb@x", "", PartLocal},
		{"empty resource", "x/", "", PartResource},
		{"two at signs", "a@b@c", "", PartDomain},
		{"at sign in resource is fine", "a@b/c@d/e", "a@b/c@d/e", ""},
		{"2 KiB resource", "a@b/" + long(2048), "", PartResource},
		{"1023-octet resource", "a@b/" + long(1023), "a@b/" + long(1023), ""},
		{"resource with spaces", "a@b/my phone", "a@b/my phone", ""},
		{"resource NBSP mapped to space", "a@b/my\u00a0phone", "a@b/my phone", ""},
		{"resource control char", "a@b/x\ty", "", PartResource},
		{"resource keeps width and case", "a@b/ＲesⅣ", "a@b/ＲesⅣ", ""},
		{"raw part over 4 KiB", "a@b/" + strings.Repeat("\u00a0", 2049), "", PartResource},
		{"whole JID over 12 KiB", strings.Repeat("a", 3*4096+3), "", PartJID},

		// Domains.
		{"IDN U-label", "bücher.example", "bücher.example", ""},
		{"IDN upper case", "BÜCHER.example", "bücher.example", ""},
		{"IDN A-label becomes U-label", "xn--bcher-kva.example", "bücher.example", ""},
		{"IDN A-label upper case", "user@XN--BCHER-KVA.EXAMPLE/r", "user@bücher.example/r", ""},
		{"invalid A-label", "xn--a.example", "", PartDomain},
		{"A-label of pure ASCII", "xn--abc-.example", "", PartDomain},
		{"trailing dot stripped", "a@company.test.", "a@company.test", ""},
		{"trailing dot before resource", "company.test./r", "company.test/r", ""},
		{"two trailing dots", "company.test..", "", PartDomain},
		{"ideographic full stop at end", "company.test\u3002", "", PartDomain},
		{"ideographic full stop inside", "company\u3002test", "company.test", ""},
		{"empty label", "a..b", "", PartDomain},
		{"leading dot", ".a", "", PartDomain},
		{"only a dot", ".", "", PartDomain},
		{"empty", "", "", PartDomain},
		{"underscore", "a_b.example", "", PartDomain},
		{"hyphens 3-4", "ab--cd.example", "", PartDomain},
		{"leading hyphen", "-ab.example", "", PartDomain},
		{"64-octet label", long(64) + ".example", "", PartDomain},
		{"63-octet label", long(63) + ".example", long(63) + ".example", ""},
		{"254-octet name", strings.Repeat(long(62)+".", 4) + "ab", "", PartDomain},
		{"deviation sharp s in domain", "straße.de", "", PartDomain},
		{"deviation as A-label", "xn--strae-oqa.de", "", PartDomain},
		{"single label", "localhost", "localhost", ""},
		{"IPv4", "user@192.0.2.1/r", "user@192.0.2.1/r", ""},
		{"IPv4 trailing dot", "192.0.2.1.", "192.0.2.1", ""},
		{"IPv4 fullwidth digits", "１９２.０.２.１", "192.0.2.1", ""},
		{"IPv4 leading zero", "01.2.3.4", "", PartDomain},
		{"numeric last label", "0x7f.1", "", PartDomain},
		{"three numeric labels", "1.2.3", "", PartDomain},
		{"numeric first label ok", "1.example", "1.example", ""},
		{"IPv6", "[2001:db8::1]", "[2001:db8::1]", ""},
		{"IPv6 made canonical", "u@[2001:DB8:0:0::1]/r", "u@[2001:db8::1]/r", ""},
		{"IPv6 zone", "[fe80::1%eth0]", "", PartDomain},
		{"IPv4-mapped IPv6", "[::ffff:192.0.2.1]", "", PartDomain},
		{"IPv4 in brackets", "[192.0.2.1]", "", PartDomain},
		{"unbracketed IPv6", "2001:db8::1", "", PartDomain},
		{"unclosed bracket", "[::1", "", PartDomain},
		{"RTL domain", "مثال.إختبار", "مثال.إختبار", ""},
		{"bidi rule violation", "aمثال.example", "", PartDomain},
		{"space in domain", "a b.example", "", PartDomain},
		{"domain invalid UTF-8", "a\xff.example", "", PartDomain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Prepare(tt.in)
			if tt.want != "" {
				if err != nil {
					t.Fatalf("Prepare(%q): %v", tt.in, err)
				}
				if got := j.String(); got != tt.want {
					t.Fatalf("Prepare(%q) = %q, want %q", tt.in, got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Prepare(%q) = %q, want a %s error", tt.in, j, tt.part)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Prepare(%q): error %v is not an *Error", tt.in, err)
			}
			if e.Part != tt.part {
				t.Fatalf("Prepare(%q): part %q (%v), want %q", tt.in, e.Part, err, tt.part)
			}
			if j != (JID{}) {
				t.Fatalf("Prepare(%q) returned %+v with an error", tt.in, j)
			}
		})
	}
}

func TestParts(t *testing.T) {
	tests := []struct {
		in       string
		want     JID
		bare     string
		isDomain bool
	}{
		{"Alice@Company.Test/Phone", JID{"alice", "company.test", "Phone"}, "alice@company.test", false},
		{"alice@company.test", JID{"alice", "company.test", ""}, "alice@company.test", false},
		{"company.test", JID{"", "company.test", ""}, "company.test", true},
		{"company.test/admin", JID{"", "company.test", "admin"}, "company.test", false},
		{"a/b@c", JID{"", "a", "b@c"}, "a", false},
		{"a@b/c/d", JID{"a", "b", "c/d"}, "a@b", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			j, err := Prepare(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if j != tt.want {
				t.Fatalf("got %+v, want %+v", j, tt.want)
			}
			if got := j.Bare(); got != tt.bare {
				t.Fatalf("Bare() = %q, want %q", got, tt.bare)
			}
			if got := j.IsDomain(); got != tt.isDomain {
				t.Fatalf("IsDomain() = %v, want %v", got, tt.isDomain)
			}
		})
	}
}

func TestPrepareDomain(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"Company.Test.", "company.test", false},
		{"BÜCHER.example", "bücher.example", false},
		{"xn--bcher-kva.example", "bücher.example", false},
		{"[0::1]", "[::1]", false},
		{"a@company.test", "", true},
		{"company.test/r", "", true},
		{"company＠test", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := PrepareDomain(tt.in)
			if tt.wantErr {
				var e *Error
				if !errors.As(err, &e) || e.Part != PartDomain {
					t.Fatalf("PrepareDomain(%q) = %q, %v; want a domainpart *Error", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("PrepareDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestErrorWrapsCause(t *testing.T) {
	_, err := Prepare("bobⅣ@x")
	var e *Error
	if !errors.As(err, &e) || e.Err == nil || errors.Unwrap(err) != e.Err {
		t.Fatalf("want an *Error wrapping the PRECIS error, got %#v", err)
	}
	if !strings.Contains(err.Error(), "localpart") || !strings.Contains(err.Error(), "PRECIS") {
		t.Fatalf("message %q does not say which part and why", err)
	}
}

// TestFastPathTaken guards the hot path: typical ASCII JIDs must not fall
// back to the full preparation, and canonical ones must not allocate.
func TestFastPathTaken(t *testing.T) {
	for _, s := range []string{
		"alice@company.test/phone-123",
		"Alice@Company.Test/Phone 123",
		"company.test",
		"conference.company.test/room@x",
	} {
		if _, ok := prepareASCII(s); !ok {
			t.Errorf("%q: fast path not taken", s)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Prepare("alice@company.test/phone-123"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("canonical ASCII JID: %v allocations, want 0", allocs)
	}
}

func TestDomainASCII(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@BÜCHER.example/r", "xn--bcher-kva.example"},
		{"alice@xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"company.test", "company.test"},
		{"[2001:db8::1]", "[2001:db8::1]"},
		{"مثال.إختبار", "xn--mgbh0fb.xn--kgbechtv"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			j, err := Prepare(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := j.DomainASCII(); got != tt.want {
				t.Fatalf("DomainASCII() = %q, want %q", got, tt.want)
			}
		})
	}
	if got := DomainASCII("a b.é"); got != "" {
		t.Fatalf("DomainASCII of an unprepared string = %q, want \"\"", got)
	}
}
