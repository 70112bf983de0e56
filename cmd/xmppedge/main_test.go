package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

// writeConfig writes a config with a real certificate for company.test and
// returns its path; edit may change the YAML text first.
func writeConfig(t *testing.T, edit func(string) string) string {
	t.Helper()
	return writeConfigIn(t, t.TempDir(), edit)
}

// writeConfigIn is writeConfig in the folder dir.
func writeConfigIn(t *testing.T, dir string, edit func(string) string) string {
	t.Helper()
	ca, err := certstest.NewCA("cli test CA")
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue(certstest.LeafOptions{DNSNames: []string{"company.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := certstest.WriteFiles(dir, "company.test", c, k); err != nil {
		t.Fatal(err)
	}
	cfg := `domains: [company.test]
inside:
  listen: ["127.0.0.10:5269"]
  server: "127.0.0.2:5269"
outside:
  listen: ["127.0.0.11:5269"]
  listen_tls: ["127.0.0.11:5270"]
tls:
  certificates:
    - {cert_file: company.test.crt, key_file: company.test.key}
dialback:
  secret_file: dialback.secret
policy:
  rules: ` + rulesDir(t) + `
  data: [` + filepath.Join(rulesDir(t), "partners.yaml") + `]
audit:
  path: audit.jsonl
`
	if edit != nil {
		cfg = edit(cfg)
	}
	path := filepath.Join(dir, "xmppedge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rulesDir is the shipped rules/ folder.
func rulesDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("../../rules")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(string) string
		code     int
		contains []string
	}{
		{"valid", nil, 0, []string{"configuration is valid"}},
		{"typo in a key", func(s string) string { return strings.Replace(s, "listen_tls", "listen_tsl", 1) },
			1, []string{"outside.listen_tsl", "unknown setting", `did you mean "listen_tls"`}},
		{"missing certificate file", func(s string) string { return strings.Replace(s, "company.test.key", "nope.key", 1) },
			1, []string{"tls.certificates[0].key_file", "nope.key"}},
		{"no certificate for a local domain", func(s string) string { return strings.Replace(s, "[company.test]", "[company.test, other.test]", 1) },
			1, []string{"tls.certificates", "other.test"}},
		{"a policy that does not compile", func(s string) string {
			bad := filepath.Join(t.TempDir(), "bad")
			os.Mkdir(bad, 0o755)
			os.WriteFile(filepath.Join(bad, "x.rego"), []byte("package xmppedge.session\n\ndecision := {\n"), 0o644)
			return strings.Replace(s, "rules: "+rulesDir(t), "rules: "+bad, 1)
		}, 1, []string{"policy.rules", "x.rego"}},
		{"several errors at once", func(s string) string {
			s = strings.Replace(s, `server: "127.0.0.2:5269"`, `server: "nowhere"`, 1)
			return strings.Replace(s, "listen_tls", "listen_tsl", 1)
		}, 1, []string{"inside.server", "outside.listen_tsl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runCLI([]string{"check", "-config", writeConfig(t, tt.edit)}, &out, &errOut)
			all := out.String() + errOut.String()
			if code != tt.code {
				t.Fatalf("exit %d, want %d; output:\n%s", code, tt.code, all)
			}
			for _, c := range tt.contains {
				if !strings.Contains(all, c) {
					t.Errorf("output lacks %q:\n%s", c, all)
				}
			}
		})
	}
}

// The example config of the README is valid once `make build` has made its
// development certificate; here we make one like it.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("../../xmppedge.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	ca, err := certstest.NewCA("example")
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue(certstest.LeafOptions{DNSNames: []string{"company.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := certstest.WriteFiles(filepath.Join(dir, "dev"), "company.test", c, k); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rulesDir(t), filepath.Join(dir, "rules")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "xmppedge.example.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := runCLI([]string{"check", "-config", path}, &out, &errOut); code != 0 {
		t.Fatalf("example config: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"version"}, 0, "xmppedge "},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{nil, 2, "usage:"},
		{[]string{"check", "-config", "/nonexistent/x.yaml"}, 1, "/nonexistent/x.yaml"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := runCLI(tt.args, &out, &errOut)
		if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.out) {
			t.Errorf("%v: exit %d, output %q; want %d and %q", tt.args, code, out.String()+errOut.String(), tt.code, tt.out)
		}
	}
}
