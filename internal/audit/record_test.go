package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// everyField is a record with every member of the schema set, with values
// that need escaping where a string can hold them.
func everyField() *Record {
	return &Record{
		Time:           time.Date(2026, 3, 15, 10, 20, 30, 123456789, time.UTC),
		Node:           "edge-1",
		Event:          EventStanza,
		Session:        "s42",
		Leg:            "outside",
		Direction:      "inbound",
		LocalDomain:    "company.test",
		RemoteDomain:   "partner.test",
		RemoteAddr:     "192.0.2.7:40000",
		TLSVersion:     "TLS 1.3",
		TLSCipher:      "TLS_AES_128_GCM_SHA256",
		Auth:           "dialback",
		PeerCert:       "valid",
		From:           "juliet@partner.test/balcony",
		To:             "romeo@company.test/orchard",
		FromSent:       "Juliet@PARTNER.test/balcony",
		ToSent:         "romeo@company.test./orchard",
		Kind:           "message",
		Type:           "chat",
		ID:             "m1",
		Size:           1234,
		Encryption:     "omemo",
		FileTransfer:   StringsOf("oob:upload.partner.test", "ibb", `odd "quoted" \ one`),
		Decision:       "allow",
		Reason:         "partner\nallowed",
		Modified:       true,
		Stripped:       StringsOf("{urn:xmpp:jingle:1}jingle", "{jabber:x:oob}x"),
		PolicyRevision: "r7",
		BodySHA256:     strings.Repeat("ab", 32),
		Stanza:         "<message>\u2028</message>",
		Actor:          "client certificate CN=ops,O=Company",
		Action:         "session.close",
		Target:         "s41",
		DroppedOffset:  10,
		DroppedBytes:   3,
		DroppedSHA256:  "cd",
	}
}

func TestEveryFieldRoundTripsAndVerifies(t *testing.T) {
	key := []byte(strings.Repeat("k", MinHMACKeyLen))
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"sha256", nil}, {"hmac", key}} {
		t.Run(tc.name, func(t *testing.T) {
			in := everyField()
			data := chainOf(tc.key, in, &Record{Time: in.Time, Node: "edge-1", Event: EventAdmin, Actor: "bearer token", Action: "reload", Decision: "allow"})
			if res := verifyBytes(data, tc.key); !res.OK || res.Records != 2 {
				t.Fatalf("does not verify: %+v\n%s", res, data)
			}
			first, _, _ := bytes.Cut(data, []byte("\n"))
			if !json.Valid(first) {
				t.Fatalf("not JSON: %s", first)
			}
			var out Record
			if err := json.Unmarshal(first, &out); err != nil {
				t.Fatal(err)
			}
			out.Hash = "" // chainOf leaves in.Hash empty
			if out != *in {
				t.Fatalf("round trip changed the record:\nin  %+v\nout %+v", in, &out)
			}
			again := encodeLine(nil, &out, newChainHasher(tc.key))
			if !bytes.Equal(again, append(first, '\n')) {
				t.Fatalf("re-encoding differs:\n%s\n%s", first, again)
			}
			// The members come in the documented order.
			order := []string{"seq", "time", "node", "event", "session", "leg", "direction", "local_domain", "remote_domain",
				"remote_addr", "tls_version", "tls_cipher", "auth", "peer_cert", "from", "to", "from_sent", "to_sent", "kind",
				"type", "id", "size", "encryption", "file_transfer", "decision", "reason", "modified", "stripped",
				"policy_revision", "body_sha256", "stanza", "actor", "action", "target", "dropped_offset", "dropped_bytes",
				"dropped_sha256", "prev", "hash"}
			at := 0
			for _, name := range order {
				i := bytes.Index(first[at:], []byte(`"`+name+`":`))
				if i < 0 {
					t.Fatalf("member %q missing or out of order in %s", name, first)
				}
				at += i
			}
			// Editing a new member breaks the chain.
			edited := bytes.Replace(data, []byte(`"stripped":["{urn:xmpp:jingle:1}jingle",`), []byte(`"stripped":[`), 1)
			if res := verifyBytes(edited, tc.key); res.OK {
				t.Fatal("a record with an element cut from stripped still verifies")
			}
			edited = bytes.Replace(data, []byte(`"modified":true,`), nil, 1)
			if res := verifyBytes(edited, tc.key); res.OK {
				t.Fatal("a record with modified removed still verifies")
			}
		})
	}
}

func TestNewFieldsOmittedWhenEmpty(t *testing.T) {
	r := &Record{Time: time.Unix(0, 0).UTC(), Node: "n", Event: EventStanza, FileTransfer: StringsOf(), Stripped: StringsOf()}
	line := string(chainOf(nil, r))
	for _, name := range []string{"from_sent", "to_sent", "encryption", "file_transfer", "modified", "stripped", "actor", "action", "target"} {
		if strings.Contains(line, `"`+name+`"`) {
			t.Errorf("empty %s written: %s", name, line)
		}
	}
}

// A file holding records with the new members passes Verify, and
// ReadRecords decodes them, through the files the CLI reads.
func TestNewFieldsThroughFiles(t *testing.T) {
	in := everyField()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, chainOf(nil, in), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Verify([]string{path}, nil)
	if err != nil || !res.OK {
		t.Fatalf("Verify: %+v %v", res, err)
	}
	var got []*Record
	if err := ReadRecords([]string{path}, func(r *Record, _ []byte) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("ReadRecords: %d records, want 1", len(got))
	}
	got[0].Hash = ""
	if *got[0] != *in {
		t.Fatalf("ReadRecords: %+v", got)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		name   string
		in     []string
		json   string
		values []string // nil: same as in
	}{
		{"empty", nil, `[]`, nil},
		{"one", []string{"ibb"}, `["ibb"]`, nil},
		{"one empty element", []string{""}, `[""]`, nil},
		{"several", []string{"a", "", "c"}, `["a","","c"]`, nil},
		{"escaping", []string{"q\"\\\n<&>"}, `["q\"\\\n<&>"]`, nil},
		{"NUL replaced", []string{"a\x00b"}, "[\"a\uFFFDb\"]", []string{"a\uFFFDb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := StringsOf(tt.in...)
			want := tt.values
			if want == nil {
				want = tt.in
			}
			if got := s.Values(); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
				t.Errorf("Values() = %q, want %q", got, want)
			}
			if s.Len() != len(want) {
				t.Errorf("Len() = %d, want %d", s.Len(), len(want))
			}
			data, err := s.MarshalJSON()
			if err != nil || string(data) != tt.json {
				t.Errorf("MarshalJSON = %s %v, want %s", data, err, tt.json)
			}
			var back Strings
			if err := json.Unmarshal(data, &back); err != nil || back != s {
				t.Errorf("Unmarshal(%s) = %q %v, want %q", data, back, err, s)
			}
		})
	}
	var s Strings
	if err := json.Unmarshal([]byte(`"not an array"`), &s); err == nil {
		t.Error("a string decoded as a list")
	}
	if err := json.Unmarshal([]byte(`null`), &s); err != nil || s != "" {
		t.Errorf("null: %q %v", s, err)
	}
}
