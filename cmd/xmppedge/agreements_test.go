package main

import (
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/policy"
)

func TestNextExpiry(t *testing.T) {
	at := func(h, m, s int) time.Time { return time.Date(2027, 3, 31, h, m, s, 0, time.UTC) }
	agreed := func(domain string, exp time.Time) policy.Partner {
		return policy.Partner{Domain: domain, Agreement: &policy.Agreement{Expires: exp}}
	}
	tests := []struct {
		name     string
		partners []policy.Partner
		now      time.Time
		want     time.Time // zero: none
	}{
		{"none", []policy.Partner{{Domain: "a.test"}}, at(0, 0, 0), time.Time{}},
		{"on the minute: a second after", []policy.Partner{agreed("a.test", at(12, 0, 0))}, at(11, 0, 0), at(12, 0, 1)},
		{"within a minute: the next minute, decisions being to the minute", []policy.Partner{agreed("a.test", at(12, 0, 30))}, at(11, 0, 0), at(12, 1, 1)},
		{"the earliest of several", []policy.Partner{agreed("a.test", at(15, 0, 0)), agreed("b.test", at(13, 0, 0))}, at(11, 0, 0), at(13, 0, 1)},
		{"past ones are done", []policy.Partner{agreed("a.test", at(10, 0, 0)), agreed("b.test", at(13, 0, 0))}, at(11, 0, 0), at(13, 0, 1)},
		{"all past", []policy.Partner{agreed("a.test", at(10, 0, 0))}, at(11, 0, 0), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := nextExpiry(tt.partners, tt.now)
			if ok != !tt.want.IsZero() || !got.Equal(tt.want) {
				t.Errorf("nextExpiry = %v, %v; want %v", got, ok, tt.want)
			}
		})
	}
	exp := agreementExpiries([]policy.Partner{agreed("a.test", at(15, 0, 0)), agreed("a.test", at(13, 0, 0)), {Domain: "b.test"}})
	if len(exp) != 1 || !exp["a.test"].Equal(at(13, 0, 0)) {
		t.Errorf("agreementExpiries = %v, want a.test's earliest only", exp)
	}
}
