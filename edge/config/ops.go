package config

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Inside-leg TLS modes.
const (
	InsideTLSOff      = "off"
	InsideTLSOptional = "optional"
	InsideTLSRequired = "required"
)

var insideTLSModes = []string{InsideTLSOff, InsideTLSOptional, InsideTLSRequired}

// ACMEConfig obtains certificates for the local domains from an ACME CA
// (certmagic). Nodes that share Storage share certificates and ACME locks.
type ACMEConfig struct {
	CA          string     `yaml:"ca"`           // directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory
	Email       string     `yaml:"email"`        // account contact; required
	CARoot      string     `yaml:"ca_root"`      // PEM root of the CA's own HTTPS (test CAs such as Pebble); default the system's
	Storage     string     `yaml:"storage"`      // certmagic storage folder; required
	HTTPListen  string     `yaml:"http_listen"`  // HTTP-01 challenge listener (port 80 in production); "" = TLS-ALPN-01 only, on outside.listen_tls
	EAB         *EABConfig `yaml:"eab"`          // external account binding, when the CA asks for one
	RenewBefore Duration   `yaml:"renew_before"` // renew this long before expiry (default: certmagic's, a third of the lifetime)
	// CheckInterval is how often certificates are checked for renewal
	// (default 10m).
	CheckInterval Duration `yaml:"check_interval"`
}

// EABConfig is an ACME external account binding.
type EABConfig struct {
	KeyID  string `yaml:"key_id"`
	MACKey string `yaml:"mac_key"`
}

// MetricsConfig serves Prometheus metrics, health checks and (optionally)
// the admin API over HTTP.
type MetricsConfig struct {
	// Listen is the address of /metrics, /healthz and /readyz, e.g.
	// "127.0.0.1:9269"; empty: no HTTP listener.
	Listen string `yaml:"listen"`
	// Admin adds /admin/sessions, /admin/sessions/{id}/close and POST
	// /reload on the same listener (off by default). Keep Listen on
	// loopback when it is on: the admin API has no authentication.
	Admin bool `yaml:"admin"`
}

func (c *Config) applyOpsDefaults() {
	if c.Inside.TLS == "" {
		c.Inside.TLS = InsideTLSOff
	}
}

func (c *Config) validateOps(v *validator) {
	c.Inside.TLS = strings.ToLower(strings.TrimSpace(c.Inside.TLS))
	if !slices.Contains(insideTLSModes, c.Inside.TLS) {
		v.add("inside.tls", "%q is not a mode: use off, optional or required", c.Inside.TLS)
	} else if c.Inside.TLS != InsideTLSOff {
		if c.Inside.CA.CertFile == "" || c.Inside.CA.KeyFile == "" {
			v.add("inside.ca", "inside.tls is %s: name the internal CA's cert_file and key_file (they are created on first start when missing)", c.Inside.TLS)
		} else {
			for _, f := range []struct{ field, path string }{{"inside.ca.cert_file", c.Inside.CA.CertFile}, {"inside.ca.key_file", c.Inside.CA.KeyFile}} {
				dir := filepath.Dir(c.ResolvePath(f.path))
				if info, err := os.Stat(dir); err != nil || !info.IsDir() {
					v.add(f.field, "the folder %s does not exist: create it", dir)
				}
			}
		}
	}
	if c.Inside.DNSListen != "" {
		if _, problem := parseHostPort(c.Inside.DNSListen, true); problem != "" {
			v.add("inside.dns_listen", "%s", problem)
		}
	}
	if a := c.TLS.ACME; a != nil {
		if u, err := url.Parse(a.CA); a.CA == "" || err != nil || u.Scheme != "https" || u.Host == "" {
			v.add("tls.acme.ca", "%q is not the https URL of an ACME directory", a.CA)
		}
		if a.Email == "" || !strings.Contains(a.Email, "@") {
			v.add("tls.acme.email", "required: the contact e-mail of the ACME account")
		}
		if a.Storage == "" {
			v.add("tls.acme.storage", "required: a folder for certificates and ACME state (shared by every node of a deployment)")
		}
		if a.CARoot != "" {
			if problem := c.fileProblem(a.CARoot); problem != "" {
				v.add("tls.acme.ca_root", "%s", problem)
			}
		}
		if a.HTTPListen != "" {
			if _, problem := parseHostPort(a.HTTPListen, true); problem != "" {
				v.add("tls.acme.http_listen", "%s", problem)
			}
		}
		if a.HTTPListen == "" && len(c.Outside.ListenTLS) == 0 {
			v.add("tls.acme.http_listen", "no challenge can be answered: set http_listen (HTTP-01) or outside.listen_tls (TLS-ALPN-01)")
		}
		if a.EAB != nil && (a.EAB.KeyID == "" || a.EAB.MACKey == "") {
			v.add("tls.acme.eab", "give both key_id and mac_key, or leave eab out")
		}
		if a.CheckInterval < 0 || (a.CheckInterval > 0 && a.CheckInterval < Duration(time.Second)) {
			v.add("tls.acme.check_interval", "%s: give at least 1s, or leave it out (default 10m)", a.CheckInterval)
		}
		if a.RenewBefore < 0 || (a.RenewBefore > 0 && a.RenewBefore < Duration(time.Minute)) {
			v.add("tls.acme.renew_before", "%s: give at least 1m, or leave it out", a.RenewBefore)
		}
	}
	if c.TLS.DANE && len(c.DNS.Servers) == 0 {
		v.add("tls.dane", "DANE needs a validating resolver: list it first in dns.servers")
	}
	if c.Metrics.Listen != "" {
		if _, problem := parseHostPort(c.Metrics.Listen, true); problem != "" {
			v.add("metrics.listen", "%s", problem)
		}
	} else if c.Metrics.Admin {
		v.add("metrics.admin", "the admin API is served on metrics.listen: set metrics.listen (on loopback)")
	}
}
