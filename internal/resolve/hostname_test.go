package resolve

import (
	"strings"
	"testing"
)

func TestHostnameProblem(t *testing.T) {
	tests := []struct {
		name string
		want string // substring of the problem; "" when valid
	}{
		{"example.org", ""},
		{"xmpp.example.org", ""},
		{"a", ""},
		{"3com.example", ""}, // RFC 1123: a label may start with a digit
		{"a-b.example", ""},
		{"ab--cd.example", ""}, // an R-LDH label is still a host name
		{"xn--bcher-kva.example", ""},
		{strings.Repeat("a", 63) + ".example", ""},
		{strings.Repeat("abcdefgh.", 28) + "a", ""}, // 253 characters
		{strings.Repeat("abcdefgh.", 28) + "ab", "longer than 253 characters"},
		{strings.Repeat("a", 64) + ".example", "is longer than 63 characters"},
		{"", "empty label"},
		{"bad..example", "empty label (two dots in a row?)"},
		{".example", "empty label"},
		{"-a.example", `label "-a" starts or ends with a hyphen`},
		{"a-.example", "starts or ends with a hyphen"},
		{"my_company.example", `label "my_company" contains '_' (only letters, digits and hyphens)`},
		{"_xmpp-server._tcp.example", "contains '_'"},
		{"a b.example", "contains ' '"},
		{"a/b.example", "contains '/'"},
		{"xn--.example", "starts or ends with a hyphen"},
		{"xn--zz.example", `label "xn--zz" is an invalid A-label (xn--)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HostnameProblem(tt.name)
			switch {
			case tt.want == "" && got != "":
				t.Errorf("HostnameProblem(%q) = %q, want none", tt.name, got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Errorf("HostnameProblem(%q) = %q, want one containing %q", tt.name, got, tt.want)
			}
		})
	}
}
