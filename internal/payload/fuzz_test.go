package payload

import (
	"reflect"
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// FuzzClassify checks, on any stanza ParseNode accepts: Classify never
// panics; when Interesting says no, Classify finds nothing (so the hot
// path may skip the tree), for the children names of the tree and of
// ParseContent alike; and the facts are well formed (known values, no
// duplicate transfer, hosts only for oob).
func FuzzClassify(f *testing.F) {
	for _, tt := range classifyTests {
		f.Add([]byte(tt.stanza))
	}
	f.Add([]byte(`<message><body>?OTR</body><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:server'><body>?OTR</body></message></forwarded></message>`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := xmlstream.ParseNode(raw, streamHeader)
		if err != nil {
			return
		}
		body, names := treeContent(n)
		facts := Classify(n, body)
		zero := reflect.DeepEqual(facts, Facts{})
		if !Interesting(names, body) && !zero {
			t.Fatalf("Interesting = false, Classify = %+v", facts)
		}
		if c, ok := xmlstream.ParseContent(raw, streamHeader); ok {
			if !Interesting(c.Children, c.Body) && !reflect.DeepEqual(Classify(n, c.Body), Facts{}) {
				t.Fatalf("Interesting(ParseContent) = false, Classify = %+v", Classify(n, c.Body))
			}
		}
		switch e := facts.Encryption; e {
		case "", EncryptionOMEMO, EncryptionOMEMO2, EncryptionOpenPGP, EncryptionOTR:
		default:
			if !strings.HasPrefix(e, EncryptionXEP0380) {
				t.Fatalf("encryption %q", e)
			}
		}
		seen := map[Transfer]bool{}
		for _, tr := range facts.FileTransfer {
			if seen[tr] {
				t.Fatalf("%+v listed twice", tr)
			}
			seen[tr] = true
			switch tr.Method {
			case MethodOOB:
				if tr.Host != strings.ToLower(tr.Host) || strings.ContainsAny(tr.Host, "/@: ") && !strings.HasPrefix(tr.Host, "[") {
					t.Fatalf("host %q", tr.Host)
				}
			case MethodJingle, MethodIBB, MethodSOCKS5:
				if tr.Host != "" {
					t.Fatalf("%+v has a host", tr)
				}
			default:
				t.Fatalf("method %q", tr.Method)
			}
		}
	})
}
