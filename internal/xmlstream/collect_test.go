package xmlstream

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

const collectHeader = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' xmlns:h='urn:header'>"

// sameContent compares two Contents, an empty Children the same as none.
func sameContent(a, b Content) bool {
	if len(a.Children) == 0 && len(b.Children) == 0 {
		a.Children, b.Children = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// readElements reads every element of collectHeader+body and calls f with
// each while it is the Reader's latest.
func readElements(t *testing.T, body string, f func(el *Element, h Header)) {
	t.Helper()
	r := NewReader(strings.NewReader(collectHeader+body), Limits{})
	h, err := r.ReadHeader()
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	for {
		el, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrStreamEnd) {
				return
			}
			var se *StreamError
			if errors.As(err, &se) {
				return
			}
			t.Fatalf("Next: %v", err)
		}
		f(&el, h)
	}
}

func TestCollectedContent(t *testing.T) {
	for _, tt := range contentCases {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			readElements(t, tt.raw, func(el *Element, h Header) {
				n++
				var got Content
				ok := el.ContentInto(&got)
				if ok == tt.label {
					t.Fatalf("ok = %v with a security label %v", ok, tt.label)
				}
				if !ok {
					return
				}
				if !sameContent(got, tt.want) {
					t.Fatalf("got %+v\nwant %+v", got, tt.want)
				}
				node, err := ParseNode(el.Raw, h.Namespaces)
				if err != nil {
					t.Fatal(err)
				}
				if ref := contentFromNode(node); !sameContent(got, ref) {
					t.Fatalf("differs from ParseNode: %+v vs %+v", got, ref)
				}
			})
			if n != 1 {
				t.Fatalf("%d elements read, want 1", n)
			}
		})
	}
}

// TestCollectedContentIsTheLatestElements: an Element's notes are gone once
// the Reader has moved on or let its buffers go: ContentInto then declines,
// and never answers with another element's content.
func TestCollectedContentIsTheLatestElements(t *testing.T) {
	r := NewReader(strings.NewReader(collectHeader+"<message><body>one</body></message><message><body>two</body></message>"), Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	first, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	var c Content
	if !first.ContentInto(&c) || c.Body != "one" {
		t.Fatalf("first: %+v", c)
	}
	second, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if first.ContentInto(&c) {
		t.Fatalf("an earlier element's notes answered after Next: %+v", c)
	}
	if !second.ContentInto(&c) || c.Body != "two" {
		t.Fatalf("second: %+v", c)
	}
	r.Release()
	if second.ContentInto(&c) {
		t.Fatalf("notes answered after Release: %+v", c)
	}
	if node, err := ParseNode([]byte("<message><body>x</body></message>"), testHeaderNS); err != nil || node == nil {
		t.Fatalf("ParseNode: %v", err)
	}
	var zero Element
	if zero.ContentInto(&c) {
		t.Fatal("an Element without notes answered")
	}
}

// TestCollectedContentManyChildren: a stanza with thousands of children
// is noted whole, and its stream does not keep the table afterwards.
func TestCollectedContentManyChildren(t *testing.T) {
	big := "<message><body>b</body>" + strings.Repeat("<x xmlns='urn:x'/>", 3000) + "</message>"
	r := NewReader(strings.NewReader(collectHeader+big+"<message><body>small</body></message>"), Limits{MaxElementSize: 1 << 20})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	el, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	var c Content
	if !el.ContentInto(&c) || len(c.Children) != 3001 || c.Body != "b" || c.Children[3000] != (Name{"urn:x", "x"}) {
		t.Fatalf("big stanza: %d children, body %q", len(c.Children), c.Body)
	}
	if el, err = r.Next(); err != nil || !el.ContentInto(&c) || c.Body != "small" {
		t.Fatalf("small stanza: %+v %v", c, err)
	}
	if cap(r.col.kids) > maxKeptNotes || cap(r.col.texts) > maxKeptNotes {
		t.Fatalf("the reader keeps the big stanza's notes: %d kids, %d texts", cap(r.col.kids), cap(r.col.texts))
	}
}

// FuzzCollectedContent: for every element the Reader accepts, the content
// it collected while scanning is exactly what ParseNode's tree gives; it
// declines only for a security label. The stanza path feeds the policy
// from these notes, so the policy cannot see another body than the full
// parser does.
func FuzzCollectedContent(f *testing.F) {
	for _, s := range contentSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		readElements(t, s, func(el *Element, h Header) {
			var got Content
			ok := el.ContentInto(&got)
			n, err := ParseNode(el.Raw, h.Namespaces)
			if err != nil {
				t.Fatalf("ParseNode rejects what Next accepted: %v", err)
			}
			hasLabel := false
			for _, c := range n.Children {
				hasLabel = hasLabel || c.Space == SecurityLabelNS
			}
			if ok == hasLabel {
				t.Fatalf("ContentInto ok = %v with a security label %v; input %q", ok, hasLabel, el.Raw)
			}
			if ref := contentFromNode(n); ok && !sameContent(got, ref) {
				t.Fatalf("collected %+v\nParseNode %+v\ninput %q", got, ref, el.Raw)
			}
		})
	})
}
