package config

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// validConfig returns a valid configuration whose files live in a fresh
// temporary folder.
func validConfig(t *testing.T) *Config {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"c.crt", "c.key", "ca.crt", "admin.token", "dialback.secret"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("placeholder\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "open.token"), []byte("placeholder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "open.token"), 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "folder"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &Config{
		Domains:  []string{"company.test"},
		Inside:   InsideConfig{Listen: []string{"127.0.0.10:5269"}, Server: "127.0.0.2:5269"},
		Outside:  OutsideConfig{Listen: []string{"127.0.0.11:5269"}, ListenTLS: []string{"127.0.0.11:5270"}},
		DNS:      DNSConfig{Servers: []string{"127.0.0.53:5300"}},
		TLS:      TLSConfig{Certificates: []CertificateConfig{{CertFile: "c.crt", KeyFile: "c.key"}}, CAFiles: []string{"ca.crt"}},
		Dialback: DialbackConfig{SecretFile: "dialback.secret"},
		Policy:   PolicyConfig{Rules: "folder"},
		Audit:    AuditConfig{Path: "audit.jsonl"},
		Dir:      dir,
	}
}

func TestValidConfigIsValid(t *testing.T) {
	if errs := validConfig(t).Validate(); errs != nil {
		t.Fatalf("base config invalid:\n%v", errs)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(c *Config)
		field   string // "" means: valid
		problem string
	}{
		// domains
		{"no domains", func(c *Config) { c.Domains = nil }, "domains", "required"},
		{"empty domain", func(c *Config) { c.Domains = []string{""} }, "domains[0]", "empty"},
		{"domain with space", func(c *Config) { c.Domains = []string{"com pany.test"} }, "domains[0]", "not a valid domain name"},
		{"domain with underscore", func(c *Config) { c.Domains = []string{"my_company.test"} }, "domains[0]", "not a valid domain name"},
		{"domain label too long", func(c *Config) { c.Domains = []string{strings.Repeat("a", 64) + ".test"} }, "domains[0]", "longer than 63"},
		{"domain starting with hyphen", func(c *Config) { c.Domains = []string{"-company.test"} }, "domains[0]", "hyphen"},
		{"domain with bad A-label", func(c *Config) { c.Domains = []string{"xn--zz-.test"} }, "domains[0]", "not a valid"},
		{"domain as IP", func(c *Config) { c.Domains = []string{"192.0.2.1"} }, "domains[0]", "IP address"},
		{"duplicate domain after lowercasing", func(c *Config) { c.Domains = []string{"company.test", "Company.Test."} }, "domains[1]", "same domain as domains[0]"},
		{"duplicate IDN", func(c *Config) { c.Domains = []string{"bücher.test", "xn--bcher-kva.test"} }, "domains[1]", "same domain"},
		// inside
		{"no inside listener", func(c *Config) { c.Inside.Listen = nil }, "inside.listen", "required"},
		{"inside listener without port", func(c *Config) { c.Inside.Listen = []string{"127.0.0.10"} }, "inside.listen[0]", "not host:port"},
		{"inside listener bad port", func(c *Config) { c.Inside.Listen = []string{"127.0.0.10:99999"} }, "inside.listen[0]", "invalid port"},
		{"inside listener bad host", func(c *Config) { c.Inside.Listen = []string{"bad host:5269"} }, "inside.listen[0]", "neither an IP address nor a valid host name"},
		{"no inside server", func(c *Config) { c.Inside.Server = "" }, "inside.server", "required"},
		{"inside server without host", func(c *Config) { c.Inside.Server = ":5269" }, "inside.server", "no host"},
		{"inside server port 0", func(c *Config) { c.Inside.Server = "127.0.0.2:0" }, "inside.server", "invalid port"},
		{"inside server is our listener", func(c *Config) { c.Inside.Server = "127.0.0.10:5269" }, "inside.server", "own listener"},
		{"inside server by name", func(c *Config) { c.Inside.Server = "xmpp.internal:5269" }, "", ""},
		{"allow not CIDR", func(c *Config) { c.Inside.Allow = []string{"10.0.0.0/33"} }, "inside.allow[0]", "CIDR"},
		{"allow with host bits", func(c *Config) { c.Inside.Allow = []string{"10.1.2.3/8"} }, "inside.allow[0]", `did you mean "10.0.0.0/8"`},
		{"dns_allow not CIDR", func(c *Config) { c.Inside.DNSAllow = []string{"127.0.0.1", "nowhere"} }, "inside.dns_allow[1]", "CIDR"},
		{"dns_allow of its own", func(c *Config) { c.Inside.DNSAllow = []string{"10.1.0.2/32"} }, "", ""},
		// the DNS responder announces the inside listeners
		{"dns_listen bad", func(c *Config) { c.Inside.DNSListen = "127.0.0.10" }, "inside.dns_listen", "not host:port"},
		{"dns_listen with a wildcard inside listener", func(c *Config) {
			c.Inside.DNSListen = "127.0.0.10:5300"
			c.Inside.Listen = []string{":5269"}
			c.Outside.Listen, c.Outside.ListenTLS = []string{"127.0.0.11:5270"}, nil
		}, "inside.listen[0]", "listens on every address"},
		{"dns_listen with inside listeners on two ports", func(c *Config) {
			c.Inside.DNSListen = "127.0.0.10:5300"
			c.Inside.Listen = []string{"127.0.0.10:5269", "127.0.0.12:5271"}
		}, "inside.listen", "ports 5269, 5271"},
		{"dns_listen with two port-0 inside listeners", func(c *Config) {
			c.Inside.DNSListen = "127.0.0.10:5300"
			c.Inside.Listen = []string{"127.0.0.10:0", "127.0.0.12:0"}
		}, "inside.listen", "ports 0, 0"},
		{"dns_listen with one port-0 inside listener", func(c *Config) {
			c.Inside.DNSListen = "127.0.0.10:0"
			c.Inside.Listen = []string{"127.0.0.10:0"}
		}, "", ""},
		{"dns_listen with two inside listeners on one port", func(c *Config) {
			c.Inside.DNSListen = "127.0.0.10:5300"
			c.Inside.Listen = []string{"127.0.0.10:5269", "[::1]:5269"}
		}, "", ""},
		{"two inside listeners without dns_listen", func(c *Config) { c.Inside.Listen = []string{"127.0.0.10:5269", ":5271"} }, "", ""},
		// outside and listener conflicts
		{"no outside listener", func(c *Config) { c.Outside.Listen, c.Outside.ListenTLS = nil, nil }, "outside.listen", "required"},
		{"only direct TLS listener", func(c *Config) { c.Outside.Listen = nil }, "", ""},
		{"outside listen_tls bad", func(c *Config) { c.Outside.ListenTLS = []string{"127.0.0.11"} }, "outside.listen_tls[0]", "not host:port"},
		{"same address twice", func(c *Config) { c.Outside.ListenTLS = []string{"127.0.0.11:5269"} }, "outside.listen_tls[0]", "already used by outside.listen[0]"},
		{"same address spelt differently", func(c *Config) { c.Outside.Listen = []string{"[::ffff:127.0.0.10]:5269"} }, "outside.listen[0]", "already used by inside.listen[0]"},
		{"wildcard clashes with a specific address", func(c *Config) { c.Outside.Listen = []string{":5269"} }, "outside.listen[0]", "already used by inside.listen[0]"},
		{"IPv6 wildcard clashes", func(c *Config) { c.Outside.ListenTLS = []string{"[::]:5269"} }, "outside.listen_tls[0]", "already used"},
		{"port 0 may repeat", func(c *Config) {
			c.Inside.Listen = []string{"127.0.0.1:0"}
			c.Outside.Listen = []string{"127.0.0.1:0"}
			c.Outside.ListenTLS = []string{"127.0.0.1:0"}
		}, "", ""},
		// dns
		{"dns server hostname", func(c *Config) { c.DNS.Servers = []string{"dns.example:53"} }, "dns.servers[0]", "not an IP address"},
		{"dns server port 0", func(c *Config) { c.DNS.Servers = []string{"127.0.0.53:0"} }, "dns.servers[0]", "port 0"},
		{"dns server bad port", func(c *Config) { c.DNS.Servers = []string{"127.0.0.53:http"} }, "dns.servers[0]", "not an IP address"},
		// tls
		{"certificate without key", func(c *Config) { c.TLS.Certificates[0].KeyFile = "" }, "tls.certificates[0].key_file", "required"},
		{"certificate without cert", func(c *Config) { c.TLS.Certificates[0].CertFile = "" }, "tls.certificates[0].cert_file", "required"},
		{"certificate file missing", func(c *Config) { c.TLS.Certificates[0].CertFile = "gone.crt" }, "tls.certificates[0].cert_file", "gone.crt does not exist"},
		{"key file missing", func(c *Config) { c.TLS.Certificates[0].KeyFile = "gone.key" }, "tls.certificates[0].key_file", "gone.key does not exist"},
		{"certificate is a folder", func(c *Config) { c.TLS.Certificates[0].CertFile = "folder" }, "tls.certificates[0].cert_file", "not a regular file"},
		{"ca file missing", func(c *Config) { c.TLS.CAFiles = []string{"ca.crt", "gone-ca.crt"} }, "tls.ca_files[1]", "gone-ca.crt does not exist"},
		{"no certificates is allowed", func(c *Config) { c.TLS.Certificates = nil }, "", ""},
		// dialback
		{"no dialback secret", func(c *Config) { c.Dialback.SecretFile = "" }, "dialback.secret_file", "required"},
		{"secret folder missing", func(c *Config) { c.Dialback.SecretFile = "nowhere/dialback.secret" }, "dialback.secret_file", "neither does its folder"},
		{"secret is a folder", func(c *Config) { c.Dialback.SecretFile = "folder" }, "dialback.secret_file", "not a regular file"},
		{"secret exists", func(c *Config) { c.Dialback.SecretFile = "c.key" }, "", ""},
		// limits
		{"stanza size too small", func(c *Config) { c.Limits.MaxStanzaSize = 9999 }, "limits.max_stanza_size", "between 10000 and 16777216"},
		{"stanza size too large", func(c *Config) { c.Limits.MaxStanzaSize = 16<<20 + 1 }, "limits.max_stanza_size", "out of range"},
		{"stanza size 16 MiB", func(c *Config) { c.Limits.MaxStanzaSize = 16 << 20 }, "", ""},
		{"negative queue", func(c *Config) { c.Limits.QueueSize = -5 }, "limits.queue_size", "out of range"},
		{"huge queue", func(c *Config) { c.Limits.QueueSize = MaxQueueSize + 1 }, "limits.queue_size", "out of range"},
		{"negative connect timeout", func(c *Config) { c.Limits.ConnectTimeout = Duration(-time.Second) }, "limits.connect_timeout", "out of range"},
		{"tiny connect timeout", func(c *Config) { c.Limits.ConnectTimeout = Duration(time.Millisecond) }, "limits.connect_timeout", "out of range"},
		{"idle timeout too short", func(c *Config) { c.Limits.IdleTimeout = Duration(time.Millisecond) }, "limits.idle_timeout", "out of range"},
		{"negative connections per IP", func(c *Config) { c.Limits.ConnectionsPerIP = -1 }, "limits.connections_per_ip", "between 1 and 20000"},
		{"too many connections per IP", func(c *Config) { c.Limits.ConnectionsPerIP = 20001 }, "limits.connections_per_ip", "out of range"},
		{"one connection per IP", func(c *Config) { c.Limits.ConnectionsPerIP = 1 }, "", ""},
		{"negative new connections per IP", func(c *Config) { c.Limits.NewConnectionsPerIP = -2 }, "limits.new_connections_per_ip", "more than 0"},
		{"NaN new connections per IP", func(c *Config) { c.Limits.NewConnectionsPerIP = math.NaN() }, "limits.new_connections_per_ip", "out of range"},
		{"fractional new connections per IP", func(c *Config) { c.Limits.NewConnectionsPerIP = 0.5 }, "", ""},
		{"infinite stanza rate", func(c *Config) { c.Limits.StanzaRate = math.Inf(1) }, "limits.stanza_rate", "at most"},
		{"negative stanza rate", func(c *Config) { c.Limits.StanzaRate = -200 }, "limits.stanza_rate", "out of range"},
		{"negative stanza burst", func(c *Config) { c.Limits.StanzaBurst = -1 }, "limits.stanza_burst", "between 1 and"},
		// metrics and the admin API
		{"admin without listener", func(c *Config) { c.Metrics.Admin, c.Metrics.AdminTokenFile = true, "admin.token" }, "metrics.admin", "set metrics.listen"},
		{"admin without authentication", func(c *Config) { c.Metrics.Listen, c.Metrics.Admin = "127.0.0.1:9269", true }, "metrics.admin", "needs authentication: set metrics.admin_token_file"},
		{"admin with a token", func(c *Config) {
			c.Metrics.Listen, c.Metrics.Admin, c.Metrics.AdminTokenFile = "127.0.0.1:9269", true, "admin.token"
		}, "", ""},
		{"token file missing", func(c *Config) {
			c.Metrics.Listen, c.Metrics.Admin, c.Metrics.AdminTokenFile = "127.0.0.1:9269", true, "gone.token"
		}, "metrics.admin_token_file", "gone.token does not exist"},
		{"token file readable by others", func(c *Config) {
			c.Metrics.Listen, c.Metrics.Admin, c.Metrics.AdminTokenFile = "127.0.0.1:9269", true, "open.token"
		}, "metrics.admin_token_file", "has mode 0644 and can be read by group or others: run chmod 600 "},
		{"admin with client certificates", func(c *Config) {
			c.Metrics = MetricsConfig{Listen: "127.0.0.1:9269", Admin: true, ClientCA: "ca.crt", TLSCertFile: "c.crt", TLSKeyFile: "c.key"}
		}, "", ""},
		{"client CA without TLS", func(c *Config) {
			c.Metrics = MetricsConfig{Listen: "127.0.0.1:9269", Admin: true, ClientCA: "ca.crt"}
		}, "metrics.tls_cert_file", "required with metrics.client_ca"},
		{"client CA missing", func(c *Config) {
			c.Metrics = MetricsConfig{Listen: "127.0.0.1:9269", Admin: true, ClientCA: "gone-ca.crt", TLSCertFile: "c.crt", TLSKeyFile: "c.key"}
		}, "metrics.client_ca", "gone-ca.crt does not exist"},
		{"TLS certificate without key", func(c *Config) {
			c.Metrics = MetricsConfig{Listen: "127.0.0.1:9269", TLSCertFile: "c.crt"}
		}, "metrics.tls_key_file", "required with metrics.tls_cert_file"},
		{"TLS key without certificate", func(c *Config) {
			c.Metrics = MetricsConfig{Listen: "127.0.0.1:9269", TLSKeyFile: "c.key"}
		}, "metrics.tls_cert_file", "required with metrics.tls_key_file"},
		{"TLS key file missing", func(c *Config) {
			c.Metrics = MetricsConfig{Listen: "127.0.0.1:9269", TLSCertFile: "c.crt", TLSKeyFile: "gone.key"}
		}, "metrics.tls_key_file", "gone.key does not exist"},
		{"HTTPS metrics without admin", func(c *Config) {
			c.Metrics = MetricsConfig{Listen: "127.0.0.1:9269", TLSCertFile: "c.crt", TLSKeyFile: "c.key"}
		}, "", ""},
		// log
		{"bad log level", func(c *Config) { c.Log.Level = "trace" }, "log.level", "debug, info, warn, error"},
		{"bad log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "text, json"},
		{"log settings are case-insensitive", func(c *Config) { c.Log.Level, c.Log.Format = "WARN", "JSON" }, "", ""},
		// policy
		{"warm samples in the config's folder", func(c *Config) { c.Policy.WarmSamples = "policy-samples.json" }, "", ""},
		{"warm samples, a file that exists", func(c *Config) { c.Policy.WarmSamples = "c.crt" }, "", ""},
		{"warm samples named a folder", func(c *Config) { c.Policy.WarmSamples = "folder" }, "policy.warm_samples", "is a folder: name a file in it"},
		{"warm samples in a missing folder", func(c *Config) { c.Policy.WarmSamples = "gone/samples.json" }, "policy.warm_samples", "does not exist: create it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkValidate(t, tt.change, tt.field, tt.problem) })
	}
}

func TestValidateNormalises(t *testing.T) {
	c := validConfig(t)
	c.Domains = []string{"Company.Test.", "bücher.test"}
	c.DNS.Servers = []string{"127.0.0.53", "::1", "[2001:db8::53]:5353"}
	c.Inside.Allow = []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"}
	c.Log.Level = " Debug "
	if errs := c.Validate(); errs != nil {
		t.Fatal(errs)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"domains", c.Domains, []string{"company.test", "xn--bcher-kva.test"}},
		{"dns servers", c.DNS.Servers, []string{"127.0.0.53:53", "[::1]:53", "[2001:db8::53]:5353"}},
		{"allow", c.ParsedAllow(), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")}},
		{"log level", c.Log.Level, "debug"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v; want %v", ch.name, ch.got, ch.want)
		}
	}
	// Validating again changes nothing.
	if errs := c.Validate(); errs != nil {
		t.Fatalf("second Validate: %v", errs)
	}
	if !reflect.DeepEqual(c.Domains, []string{"company.test", "xn--bcher-kva.test"}) {
		t.Errorf("second Validate changed domains: %v", c.Domains)
	}
}

func TestDNSAllowDefaultsToInsideAllow(t *testing.T) {
	tests := []struct {
		name            string
		allow, dnsAllow []string
		want            []netip.Prefix
	}{
		{"both default", nil, nil, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		{"inside.allow", []string{"10.1.0.2/32"}, nil, []netip.Prefix{netip.MustParsePrefix("10.1.0.2/32")}},
		{"its own", []string{"10.1.0.2/32"}, []string{"10.1.0.3"}, []netip.Prefix{netip.MustParsePrefix("10.1.0.3/32")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			c.Inside.Allow, c.Inside.DNSAllow = tt.allow, tt.dnsAllow
			if errs := c.Validate(); errs != nil {
				t.Fatal(errs)
			}
			if got := c.ParsedDNSAllow(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParsedDNSAllow = %v; want %v", got, tt.want)
			}
		})
	}
	c := &Config{Inside: InsideConfig{Allow: []string{"10.0.0.0/8", "junk"}}}
	if got, want := c.ParsedDNSAllow(), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}; !reflect.DeepEqual(got, want) {
		t.Errorf("ParsedDNSAllow before Validate = %v; want %v", got, want)
	}
}

func TestParsedAllowBeforeValidate(t *testing.T) {
	c := &Config{Inside: InsideConfig{Allow: []string{"10.0.0.0/8", "junk"}}}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if got := c.ParsedAllow(); !reflect.DeepEqual(got, want) {
		t.Errorf("ParsedAllow = %v; want %v", got, want)
	}
}

// checkValidate applies change to a valid config and validates it: with
// field "" it must stay valid, else give exactly one problem, on field,
// whose text contains problem.
func checkValidate(t *testing.T, change func(*Config), field, problem string) {
	t.Helper()
	c := validConfig(t)
	change(c)
	errs := c.Validate()
	if field == "" {
		if errs != nil {
			t.Fatalf("want valid, got:\n%v", errs)
		}
		return
	}
	if len(errs) != 1 {
		t.Fatalf("want exactly one problem (%s), got %d:\n%v", field, len(errs), errs)
	}
	if errs[0].Field != field || !strings.Contains(errs[0].Problem, problem) {
		t.Errorf("got %v; want %s: ...%s...", errs[0], field, problem)
	}
}
