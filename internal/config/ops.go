package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
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
// the admin API over HTTP, or HTTPS with TLSCertFile and TLSKeyFile.
type MetricsConfig struct {
	// Listen is the address of /metrics, /healthz and /readyz, e.g.
	// "127.0.0.1:9269"; empty: no HTTP listener.
	Listen string `yaml:"listen"`
	// Admin adds /admin/sessions, /admin/sessions/{id}/close and POST
	// /reload on the same listener (off by default). It needs
	// authentication: AdminTokenFile, ClientCA, or both (either one then
	// admits a request). /metrics, /healthz and /readyz stay open.
	Admin bool `yaml:"admin"`
	// AdminTokenFile holds the bearer token of the admin API (one line, at
	// least MinAdminTokenLen characters of A-Z a-z 0-9 - . _ ~ + / =, e.g.
	// from `openssl rand -hex 32`); requests send it as "Authorization:
	// Bearer TOKEN". The file must not be readable by group or others
	// (chmod 600). Re-read at reload.
	AdminTokenFile string `yaml:"admin_token_file"`
	// ClientCA is a PEM file of the CA certificates that issue the
	// administrators' client certificates: a request to the admin API
	// with a client certificate that verifies against it is admitted.
	// It needs TLSCertFile and TLSKeyFile.
	ClientCA string `yaml:"client_ca"`
	// TLSCertFile and TLSKeyFile (PEM) make the listener serve HTTPS. A
	// client certificate is asked for but not required, so Prometheus
	// scrapes /metrics without one.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// MinAdminTokenLen is the shortest bearer token accepted in
// metrics.admin_token_file.
const MinAdminTokenLen = 16

// TLS reports whether the metrics listener serves HTTPS.
func (m MetricsConfig) TLS() bool { return m.TLSCertFile != "" }

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
		c.validateAnnouncedListeners(v)
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
	c.validateMetrics(v)
}

// validateAnnouncedListeners checks that the DNS responder can announce
// the inside listeners: one SRV target has one port, and it must name
// addresses the internal server can connect to.
func (c *Config) validateAnnouncedListeners(v *validator) {
	var ports []string
	for i, a := range c.Inside.Listen {
		la, problem := parseHostPort(a, true)
		if problem != "" {
			continue // reported with inside.listen
		}
		if la.host == "*" {
			v.add(fmt.Sprintf("inside.listen[%d]", i), "%q listens on every address, so inside.dns_listen cannot announce it: give the address the internal server connects to, like \"10.1.0.5:5269\"", a)
		}
		port := strconv.Itoa(la.port)
		if la.port == 0 {
			port = "0" // each listener gets a port of its own at start
		}
		if la.port == 0 || !slices.Contains(ports, port) {
			ports = append(ports, port)
		}
	}
	if len(ports) > 1 {
		v.add("inside.listen", "the inside listeners are on ports %s (port 0: a free port each, picked at start), and inside.dns_listen announces one port: put every inside listener on the same fixed port", strings.Join(ports, ", "))
	}
}

func (c *Config) validateMetrics(v *validator) {
	m := &c.Metrics
	if m.Listen != "" {
		if _, problem := parseHostPort(m.Listen, true); problem != "" {
			v.add("metrics.listen", "%s", problem)
		}
	} else if m.Admin {
		v.add("metrics.admin", "the admin API is served on metrics.listen: set metrics.listen")
	}
	if m.Admin && m.AdminTokenFile == "" && m.ClientCA == "" {
		v.add("metrics.admin", "the admin API needs authentication: set metrics.admin_token_file (a file holding a bearer token, chmod 600; e.g. `openssl rand -hex 32 > admin.token`), or metrics.client_ca with metrics.tls_cert_file and metrics.tls_key_file (administrators present client certificates), or set admin: false")
	}
	if f := m.AdminTokenFile; f != "" {
		path := c.ResolvePath(f)
		if problem := c.fileProblem(f); problem != "" {
			v.add("metrics.admin_token_file", "%s", problem)
		} else if info, err := os.Stat(path); err == nil && runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
			v.add("metrics.admin_token_file", "%s has mode %04o and can be read by group or others: run chmod 600 %s", path, info.Mode().Perm(), path)
		}
	}
	if m.ClientCA != "" {
		if problem := c.fileProblem(m.ClientCA); problem != "" {
			v.add("metrics.client_ca", "%s", problem)
		}
		if m.TLSCertFile == "" {
			v.add("metrics.tls_cert_file", "required with metrics.client_ca: client certificates are exchanged in TLS, so the listener serves HTTPS; give its certificate (PEM) here and its key in metrics.tls_key_file")
		}
	}
	switch {
	case m.TLSCertFile != "" && m.TLSKeyFile == "":
		v.add("metrics.tls_key_file", "required with metrics.tls_cert_file: the PEM file of the certificate's private key")
	case m.TLSCertFile == "" && m.TLSKeyFile != "":
		if m.ClientCA == "" {
			v.add("metrics.tls_cert_file", "required with metrics.tls_key_file: the PEM file of the listener's certificate chain")
		}
	}
	for _, f := range []struct{ field, path string }{{"metrics.tls_cert_file", m.TLSCertFile}, {"metrics.tls_key_file", m.TLSKeyFile}} {
		if f.path != "" {
			if problem := c.fileProblem(f.path); problem != "" {
				v.add(f.field, "%s", problem)
			}
		}
	}
}
