package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadFullConfig(t *testing.T) {
	cfg, err := Load("testdata/good/xmppedge.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	dir, _ := filepath.Abs("testdata/good")
	checks := []struct {
		name      string
		got, want any
	}{
		{"dir", cfg.Dir, dir},
		{"domains (lowercase, IDN as A-label)", cfg.Domains, []string{"company.test", "xn--bcher-kva.company.test"}},
		{"inside.listen", cfg.Inside.Listen, []string{"127.0.0.10:5269"}},
		{"inside.server", cfg.Inside.Server, "127.0.0.2:5269"},
		{"inside.allow", cfg.ParsedAllow(), []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("fd00::/8")}},
		{"outside.listen", cfg.Outside.Listen, []string{"127.0.0.11:5269"}},
		{"outside.listen_tls", cfg.Outside.ListenTLS, []string{"127.0.0.11:5270"}},
		{"outside.require_tls", cfg.Outside.TLSRequired(), true},
		{"dns.servers (port 53 added)", cfg.DNS.Servers, []string{"127.0.0.53:5300", "127.0.0.54:53"}},
		{"tls.certificates", cfg.TLS.Certificates, []CertificateConfig{{CertFile: "company.test.crt", KeyFile: "company.test.key"}}},
		{"cert path resolved", cfg.ResolvePath(cfg.TLS.Certificates[0].CertFile), filepath.Join(dir, "company.test.crt")},
		{"tls.ca_files", cfg.TLS.CAFiles, []string{"ca.crt"}},
		{"tls.system_roots", cfg.TLS.SystemRootsTrusted(), false},
		{"dialback.secret_file", cfg.ResolvePath(cfg.Dialback.SecretFile), filepath.Join(dir, "dialback.secret")},
		{"limits.max_stanza_size", cfg.Limits.MaxStanzaSize, 262144},
		{"limits.queue_size", cfg.Limits.QueueSize, 5000},
		{"limits.connect_timeout", cfg.Limits.ConnectTimeout.Std(), 5 * time.Second},
		{"limits.idle_timeout", cfg.Limits.IdleTimeout.Std(), 15 * time.Minute},
		{"limits.connections_per_ip", cfg.Limits.ConnectionsPerIP, 8},
		{"limits.new_connections_per_ip", cfg.Limits.NewConnectionsPerIP, 0.5},
		{"limits.stanza_rate", cfg.Limits.StanzaRate, 50.0},
		{"limits.stanza_burst", cfg.Limits.StanzaBurst, 100},
		{"inside.dns_listen", cfg.Inside.DNSListen, "127.0.0.10:5300"},
		{"inside.dns_allow", cfg.ParsedDNSAllow(), []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		{"metrics", cfg.Metrics, MetricsConfig{Listen: "127.0.0.1:9269", Admin: true, ClientCA: "ca.crt", TLSCertFile: "company.test.crt", TLSKeyFile: "company.test.key"}},
		{"metrics.tls", cfg.Metrics.TLS(), true},
		{"log.level", cfg.Log.Level, "debug"},
		{"log.format", cfg.Log.Format, "json"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Load("testdata/minimal.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"inside.allow", cfg.Inside.Allow, []string{"127.0.0.0/8", "::1/128"}},
		{"parsed allow", cfg.ParsedAllow(), []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		{"outside.require_tls", cfg.Outside.TLSRequired(), true},
		{"outside.dialback_shortcut", cfg.Outside.DialbackShortcutOn(), true},
		{"outside.listen_tls", len(cfg.Outside.ListenTLS), 0},
		{"dns.servers (system)", len(cfg.DNS.Servers), 0},
		{"tls.system_roots", cfg.TLS.SystemRootsTrusted(), true},
		{"limits.max_stanza_size", cfg.Limits.MaxStanzaSize, 512 * 1024},
		{"limits.queue_size", cfg.Limits.QueueSize, 10000},
		{"limits.connect_timeout", cfg.Limits.ConnectTimeout.Std(), 10 * time.Second},
		{"limits.idle_timeout", cfg.Limits.IdleTimeout.Std(), 10 * time.Minute},
		{"limits.connections_per_ip", cfg.Limits.ConnectionsPerIP, 64},
		{"limits.new_connections_per_ip", cfg.Limits.NewConnectionsPerIP, 16.0},
		{"limits.stanza_rate", cfg.Limits.StanzaRate, 200.0},
		{"limits.stanza_burst", cfg.Limits.StanzaBurst, 400},
		{"inside.dns_allow (inside.allow)", cfg.ParsedDNSAllow(), []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		{"metrics (off)", cfg.Metrics, MetricsConfig{}},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "text"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestTLSFlagsDefaultTrueButFalseHonoured(t *testing.T) {
	f := false
	tests := []struct {
		name string
		o    OutsideConfig
		tl   TLSConfig
		want bool
	}{
		{"unset", OutsideConfig{}, TLSConfig{}, true},
		{"false", OutsideConfig{RequireTLS: &f, DialbackShortcut: &f}, TLSConfig{SystemRoots: &f}, false},
	}
	for _, tt := range tests {
		if got := tt.o.TLSRequired(); got != tt.want {
			t.Errorf("%s: TLSRequired = %v", tt.name, got)
		}
		if got := tt.o.DialbackShortcutOn(); got != tt.want {
			t.Errorf("%s: DialbackShortcutOn = %v", tt.name, got)
		}
		if got := tt.tl.SystemRootsTrusted(); got != tt.want {
			t.Errorf("%s: SystemRootsTrusted = %v", tt.name, got)
		}
	}
}

// minimalYAML is a valid configuration (relative to testdata/) that the
// parsing tests extend or break.
const minimalYAML = `domains: [company.test]
inside:
  listen: ["127.0.0.10:5269"]
  server: "127.0.0.2:5269"
outside:
  listen: ["127.0.0.11:5269"]
dialback:
  secret_file: dialback.secret
policy:
  rules: rules
audit:
  path: audit.jsonl
`

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		wantField   string
		wantProblem string
	}{
		{"typo in a nested key", strings.Replace(minimalYAML, "  server:", "  sever:", 1),
			"inside.sever", `unknown setting on line 4 (did you mean "server"?)`},
		{"typo in a section", minimalYAML + "limit:\n  queue_size: 10\n",
			"limit", `unknown setting on line 13 (did you mean "limits"?)`},
		{"dash instead of underscore", minimalYAML + "outside2: 1\n",
			"outside2", `unknown setting on line 13 (did you mean "outside"?)`},
		{"key of another section", minimalYAML + "log:\n  queue_size: 10\n",
			"log.queue_size", `unknown setting on line 14 ("queue_size" is a setting of limits.queue_size)`},
		{"inside a list of mappings", minimalYAML + "tls:\n  certificates:\n    - {cert_file: a.crt, keyfile: a.key}\n",
			"tls.certificates[0].keyfile", `unknown setting on line 15 (did you mean "key_file"?)`},
		{"nothing close", minimalYAML + "log:\n  colour: true\n",
			"log.colour", `unknown setting on line 14 (known settings here: format, level)`},
		{"hyphenated spelling", strings.Replace(minimalYAML, "  secret_file:", "  secret-file:", 1),
			"dialback.secret-file", `(did you mean "secret_file"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "testdata")
			fe := requireFieldErrors(t, err)
			for _, e := range fe {
				if e.Field == tt.wantField && strings.Contains(e.Problem, tt.wantProblem) {
					return
				}
			}
			t.Errorf("no problem %s: %q in:\n%v", tt.wantField, tt.wantProblem, err)
		})
	}
}

func TestTyposFile(t *testing.T) {
	_, err := Load("testdata/typos.yaml")
	fe := requireFieldErrors(t, err)
	want := []string{
		"inside.listn", "outside.requre_tls", "tls.certificates[0].keyfile", "dialback.server", "limit",
		"inside.listen", "tls.certificates[0].cert_file", "tls.certificates[0].key_file",
	}
	if got := fe.Fields(); !reflect.DeepEqual(got, want) {
		t.Errorf("fields = %q\nwant %q\n%v", got, want, err)
	}
	if !strings.Contains(err.Error(), "inside.listn: unknown setting on line 3 (did you mean \"listen\"?)") {
		t.Errorf("error does not explain the typo:\n%v", err)
	}
}

func TestSyntaxError(t *testing.T) {
	tests := []struct {
		name string
		load func() error
		want []string
	}{
		{"Load names the file and the line", func() error { _, err := Load("testdata/syntax_error.yaml"); return err },
			[]string{"testdata/syntax_error.yaml", "not valid YAML", "line 2"}},
		{"tab indentation", func() error { _, err := Parse([]byte("domains:\n\t- a.test\n"), ""); return err },
			[]string{"not valid YAML", "line 2"}},
		{"unclosed quote", func() error { _, err := Parse([]byte("inside:\n  server: \"127.0.0.1:5269\n"), ""); return err },
			[]string{"not valid YAML", "line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.load()
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *SyntaxError", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestWrongTypes(t *testing.T) {
	_, err := Load("testdata/wrong_types.yaml")
	fe := requireFieldErrors(t, err)
	want := FieldErrors{
		{"domains", `line 1: must be a list, like [a, b] or one "- item" per line, not "company.test"`},
		{"inside.server", "line 4: must be a single value, not a list"},
		{"outside.require_tls", `line 7: must be true or false, not "sometimes"`},
		{"limits.max_stanza_size", `line 11: must be a whole number, not "big"`},
		{"limits.connect_timeout", `line 12: 10 has no unit: write a duration with a unit, like "10s" or "10m"`},
		{"limits.idle_timeout", `line 13: "ten minutes" is not a duration: write it like "10s", "1m30s", "10m" or "2555d" (units: ms, s, m, h, d)`},
	}
	if !reflect.DeepEqual(fe, want) {
		t.Errorf("got\n%v\nwant\n%v", fe, want)
	}
}

// TestDialbackShortcut: outside.dialback_shortcut is on unless written
// false, and only true or false are accepted.
func TestDialbackShortcut(t *testing.T) {
	with := func(v string) string {
		return strings.Replace(minimalYAML, "  listen: [\"127.0.0.11:5269\"]\n", "  listen: [\"127.0.0.11:5269\"]\n  dialback_shortcut: "+v+"\n", 1)
	}
	for _, tt := range []struct {
		yaml    string
		want    bool
		problem string
	}{
		{minimalYAML, true, ""},
		{with("true"), true, ""},
		{with("false"), false, ""},
		{with("no db:verify"), false, `line 7: must be true or false, not "no db:verify"`},
	} {
		cfg, err := Parse([]byte(tt.yaml), "testdata")
		if tt.problem != "" {
			fe := requireFieldErrors(t, err)
			if len(fe) != 1 || fe[0].Field != "outside.dialback_shortcut" || fe[0].Problem != tt.problem {
				t.Errorf("%q: got %v, want outside.dialback_shortcut: %s", tt.yaml, fe, tt.problem)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		if got := cfg.Outside.DialbackShortcutOn(); got != tt.want {
			t.Errorf("%q: DialbackShortcutOn = %v, want %v", tt.yaml, got, tt.want)
		}
	}
}

func TestDuplicateKeyAndSecondDocument(t *testing.T) {
	tests := []struct {
		name, yaml, field, problem string
	}{
		{"key set twice", minimalYAML + "log:\n  level: info\n  level: debug\n", "log.level", `"level" is set twice (first on line 14); keep one`},
		{"second document", minimalYAML + "---\ndomains: [other.test]\n", "", "a second YAML document starts here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "testdata")
			fe := requireFieldErrors(t, err)
			for _, e := range fe {
				if e.Field == tt.field && strings.Contains(e.Problem, tt.problem) {
					return
				}
			}
			t.Errorf("no problem %s: %q in:\n%v", tt.field, tt.problem, err)
		})
	}
}

func TestEveryProblemReported(t *testing.T) {
	cfg, err := Load("testdata/invalid.yaml")
	if cfg == nil {
		t.Fatal("Load returned no config with its validation errors")
	}
	fe := requireFieldErrors(t, err)
	want := []string{
		"domains[1]", "domains[2]",
		"inside.listen[1]", "outside.listen[0]", "outside.listen_tls[1]", "inside.server",
		"inside.allow[0]", "inside.allow[1]",
		"dns.servers[0]", "dns.servers[1]",
		"tls.certificates[0].cert_file", "tls.certificates[0].key_file", "tls.ca_files[0]",
		"dialback.secret_file",
		"limits.max_stanza_size", "limits.queue_size", "limits.connect_timeout", "limits.idle_timeout",
		"log.level", "log.format",
		"policy.rules", "policy.timeout", "policy.mode",
		"audit.path", "audit.durability", "audit.rotate.size",
	}
	if got := fe.Fields(); !reflect.DeepEqual(got, want) {
		t.Errorf("fields =\n%q\nwant\n%q", got, want)
	}
	// Error() is one "FIELD: PROBLEM" line per problem.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("Error() has %d lines; want %d", len(lines), len(want))
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, want[i]+": ") {
			t.Errorf("line %d %q does not start with %q", i, l, want[i]+": ")
		}
	}
}

func requireFieldErrors(t *testing.T, err error) FieldErrors {
	t.Helper()
	fe, ok := err.(FieldErrors)
	if !ok {
		t.Fatalf("error %v (%T) is not FieldErrors", err, err)
	}
	return fe
}

func TestResolvePath(t *testing.T) {
	abs := filepath.Join(string(filepath.Separator), "etc", "xmppedge", "x.crt")
	tests := []struct {
		dir, p, want string
	}{
		{"/srv/edge", "x.crt", "/srv/edge/x.crt"},
		{"/srv/edge", "certs/../x.crt", "/srv/edge/x.crt"},
		{"/srv/edge", abs, abs},
		{"/srv/edge", "", ""},
		{"", "x.crt", "x.crt"},
	}
	for _, tt := range tests {
		c := &Config{Dir: tt.dir}
		if got := c.ResolvePath(tt.p); got != tt.want {
			t.Errorf("Dir %q: ResolvePath(%q) = %q; want %q", tt.dir, tt.p, got, tt.want)
		}
	}
}

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		value   string
		want    time.Duration
		problem string
	}{
		{"10s", 10 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{`"2500ms"`, 2500 * time.Millisecond, ""},
		{"2h", 2 * time.Hour, ""},
		{"7d", 7 * 24 * time.Hour, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"1d-1h", 0, `"1d-1h" is not a duration`},
		{"d", 0, `"d" is not a duration`},
		{"106752d", 0, `"106752d" is not a duration`},
		{"10", 0, `10 has no unit`},
		{`"10"`, 0, `10 has no unit`},
		{"1.5", 0, `1.5 has no unit`},
		{"10 minutes", 0, `"10 minutes" is not a duration`},
		{"[10s]", 0, "must be a duration with a unit"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			yaml := minimalYAML + "limits:\n  idle_timeout: " + tt.value + "\n"
			cfg, err := Parse([]byte(yaml), "testdata")
			if tt.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.Limits.IdleTimeout.Std(); got != tt.want {
					t.Errorf("idle_timeout = %v; want %v", got, tt.want)
				}
				return
			}
			fe := requireFieldErrors(t, err)
			if len(fe) != 1 || fe[0].Field != "limits.idle_timeout" || !strings.Contains(fe[0].Problem, tt.problem) {
				t.Errorf("got %v; want one limits.idle_timeout problem containing %q", err, tt.problem)
			}
		})
	}
}

func TestDurationMarshal(t *testing.T) {
	v, err := Duration(90 * time.Second).MarshalYAML()
	if err != nil || v != "1m30s" {
		t.Errorf("MarshalYAML = %v, %v", v, err)
	}
}

func TestFieldErrorsError(t *testing.T) {
	fe := FieldErrors{{"inside.server", "required"}, {"", "line 3: something"}}
	if got, want := fe.Error(), "inside.server: required\nline 3: something"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
	var err error = fe
	var target FieldErrors
	if !errors.As(err, &target) || len(target) != 2 {
		t.Error("errors.As does not find FieldErrors")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestEmptyFile(t *testing.T) {
	_, err := Parse(nil, "testdata")
	fe := requireFieldErrors(t, err)
	want := []string{"domains", "inside.listen", "outside.listen", "inside.server", "dialback.secret_file", "policy.rules", "audit.path"}
	if got := fe.Fields(); !reflect.DeepEqual(got, want) {
		t.Errorf("fields = %q; want %q", got, want)
	}
}

// TestBidi: XEP-0288 is on unless a leg says bidi: false.
func TestBidi(t *testing.T) {
	tests := []struct {
		name            string
		yaml            string
		inside, outside bool
	}{
		{"default", minimalYAML, true, true},
		{"inside off", strings.Replace(minimalYAML, "  server: \"127.0.0.2:5269\"\n", "  server: \"127.0.0.2:5269\"\n  bidi: false\n", 1), false, true},
		{"outside off", strings.Replace(minimalYAML, "  listen: [\"127.0.0.11:5269\"]\n", "  listen: [\"127.0.0.11:5269\"]\n  bidi: false\n", 1), true, false},
		{"explicitly on", strings.Replace(minimalYAML, "  listen: [\"127.0.0.11:5269\"]\n", "  listen: [\"127.0.0.11:5269\"]\n  bidi: true\n", 1), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "testdata")
			if err != nil {
				t.Fatal(err)
			}
			if BidiOn(c.Inside.Bidi) != tt.inside || BidiOn(c.Outside.Bidi) != tt.outside {
				t.Fatalf("inside %v outside %v, want %v %v", BidiOn(c.Inside.Bidi), BidiOn(c.Outside.Bidi), tt.inside, tt.outside)
			}
		})
	}
}
