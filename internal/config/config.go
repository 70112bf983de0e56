package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults applied by ApplyDefaults to settings left out (or zero).
const (
	DefaultMaxStanzaSize  = 512 * 1024 // Prosody's s2s limit
	DefaultQueueSize      = 10000
	DefaultConnectTimeout = Duration(10 * time.Second)
	DefaultIdleTimeout    = Duration(10 * time.Minute)
	DefaultLogLevel       = "info"
	DefaultLogFormat      = "text"

	DefaultConnectionsPerIP    = 64
	DefaultNewConnectionsPerIP = 16.0
	DefaultStanzaRate          = 200.0
	DefaultStanzaBurst         = 400
)

// defaultInsideAllow is the inside listener's allowlist when none is given:
// loopback only.
var defaultInsideAllow = []string{"127.0.0.0/8", "::1/128"}

// Config is the whole configuration file.
type Config struct {
	Domains  []string       `yaml:"domains"`
	Inside   InsideConfig   `yaml:"inside"`
	Outside  OutsideConfig  `yaml:"outside"`
	DNS      DNSConfig      `yaml:"dns"`
	TLS      TLSConfig      `yaml:"tls"`
	Dialback DialbackConfig `yaml:"dialback"`
	Limits   LimitsConfig   `yaml:"limits"`
	Log      LogConfig      `yaml:"log"`
	Policy   PolicyConfig   `yaml:"policy"`
	Audit    AuditConfig    `yaml:"audit"`
	Metrics  MetricsConfig  `yaml:"metrics"`
	// Cluster, when set, makes this node one of a cluster sharing NATS
	// JetStream; nil: a node on its own (files only).
	Cluster *ClusterConfig `yaml:"cluster"`

	// Dir is the folder of the config file: relative paths in the file are
	// resolved against it (ResolvePath).
	Dir string `yaml:"-"`

	allow    []netip.Prefix // inside.allow parsed by Validate
	dnsAllow []netip.Prefix // inside.dns_allow parsed by Validate
}

// InsideConfig is the leg towards the internal XMPP server.
type InsideConfig struct {
	// Listen are the addresses where the internal server opens its s2s
	// connections (host:port).
	Listen []string `yaml:"listen"`
	// Server is the internal server's s2s address (inbound delivery,
	// db:verify).
	Server string `yaml:"server"`
	// Allow are the source networks (CIDR) allowed on the inside listener;
	// default loopback only.
	Allow []string `yaml:"allow"`
	// TLS on the inside leg: off (default), optional (offered and used
	// when the internal server offers it) or required. xmppedge presents
	// certificates minted by its internal CA for the remote domains it
	// stands in for.
	TLS string `yaml:"tls"`
	// CA is the internal CA (PEM files; generated on first start when
	// missing, with a log line naming the certificate file the operator
	// installs in the internal server's trust store). Required unless tls
	// is off.
	CA CertificateConfig `yaml:"ca"`
	// DNSListen, when set, runs a DNS responder there that answers
	// _xmpp-server._tcp for every non-local domain with the inside
	// listener, so the internal server finds xmppedge through its resolver
	// setting alone.
	DNSListen string `yaml:"dns_listen"`
	// DNSAllow are the source networks (CIDR) the DNS responder answers;
	// it answers REFUSED to every other source, so that it is never an
	// open resolver. Default: inside.allow.
	DNSAllow []string `yaml:"dns_allow"`
	// Bidi offers XEP-0288 bidirectional streams to the internal server:
	// when it asks (Prosody's mod_s2s_bidi), xmppedge sends the stanzas
	// for it over the stream it opened instead of opening one of its
	// own. nil means true; read it with BidiOn.
	Bidi *bool `yaml:"bidi"`
}

// OutsideConfig is the leg towards the Internet.
type OutsideConfig struct {
	// Listen are s2s listeners with STARTTLS (host:port).
	Listen []string `yaml:"listen"`
	// ListenTLS are s2s listeners with direct TLS (XEP-0368, ALPN
	// xmpp-server).
	ListenTLS []string `yaml:"listen_tls"`
	// RequireTLS refuses unencrypted outside streams; nil means true. Read it
	// with TLSRequired.
	RequireTLS *bool `yaml:"require_tls"`
	// Bidi offers XEP-0288 bidirectional streams to partners, as
	// inside.bidi does to the internal server. nil means true.
	Bidi *bool `yaml:"bidi"`
	// DialbackShortcut answers a partner's dialback request without
	// asking its authoritative server (db:verify) when the stream is
	// encrypted and the partner's certificate is valid for the requesting
	// domain — or, with tls.dane, matches the DNSSEC-authenticated TLSA
	// records of its servers (XEP-0344, "dialback without dialback"); nil
	// means true. Read it with DialbackShortcutOn.
	DialbackShortcut *bool `yaml:"dialback_shortcut"`
}

// BidiOn reports whether XEP-0288 is offered (default true).
func BidiOn(b *bool) bool { return b == nil || *b }

// TLSRequired reports whether outside streams must be encrypted (default
// true).
func (o OutsideConfig) TLSRequired() bool { return o.RequireTLS == nil || *o.RequireTLS }

// DialbackShortcutOn reports whether XEP-0344's shortcut is on (default
// true).
func (o OutsideConfig) DialbackShortcutOn() bool {
	return o.DialbackShortcut == nil || *o.DialbackShortcut
}

// DNSConfig chooses the resolvers used for SRV/A/AAAA lookups.
type DNSConfig struct {
	// Servers are "IP:PORT" resolvers (port 53 when left out); empty means
	// the system's (/etc/resolv.conf).
	Servers []string `yaml:"servers"`
}

// TLSConfig holds the TLS material.
type TLSConfig struct {
	// Certificates for the local domains. Empty is allowed (certificates may
	// come from elsewhere, e.g. ACME).
	Certificates []CertificateConfig `yaml:"certificates"`
	// CAFiles are extra PEM roots trusted when verifying peers.
	CAFiles []string `yaml:"ca_files"`
	// SystemRoots trusts the system's roots too; nil means true. Read it with
	// SystemRootsTrusted.
	SystemRoots *bool `yaml:"system_roots"`
	// ACME obtains and renews the certificates of the local domains that
	// have no certificate file.
	ACME *ACMEConfig `yaml:"acme"`
	// DANE checks the certificates of the servers xmppedge connects to
	// against DNSSEC-authenticated TLSA records (RFC 7673), asking the
	// first of dns.servers, which must be a validating resolver.
	DANE bool `yaml:"dane"`
	// POSH accepts a peer certificate that fails PKIX when its domain
	// delegates to it with POSH (RFC 7711, https://DOMAIN/.well-known/posh/).
	POSH bool `yaml:"posh"`
}

// SystemRootsTrusted reports whether the system's roots are trusted (default
// true).
func (t TLSConfig) SystemRootsTrusted() bool { return t.SystemRoots == nil || *t.SystemRoots }

// CertificateConfig is one certificate chain and its private key, PEM files.
type CertificateConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// DialbackConfig configures Server Dialback (XEP-0220).
type DialbackConfig struct {
	// SecretFile holds the dialback secret shared by every node; generated
	// on first start if missing.
	SecretFile string `yaml:"secret_file"`
}

// LimitsConfig bounds resource use. Zero means the default.
type LimitsConfig struct {
	MaxStanzaSize  int      `yaml:"max_stanza_size"` // bytes (default 512 KiB)
	QueueSize      int      `yaml:"queue_size"`      // stanzas waiting per outgoing session (default 10000)
	ConnectTimeout Duration `yaml:"connect_timeout"` // default 10s
	IdleTimeout    Duration `yaml:"idle_timeout"`    // close idle outgoing sessions (default 10m)
	// ConnectionsPerIP bounds the concurrent connections one source
	// address may hold on the outside listeners (default 64).
	ConnectionsPerIP int `yaml:"connections_per_ip"`
	// NewConnectionsPerIP is how many connections one source address may
	// open per second on the outside listeners, bursts included (default
	// 16).
	NewConnectionsPerIP float64 `yaml:"new_connections_per_ip"`
	// StanzaRate is the stanzas per second a remote domain may send us
	// (default 200), in bursts of up to StanzaBurst (default 400); over
	// it a stanza is bounced with resource-constraint. A partner's own
	// rate from the policy's session decision takes precedence. What the
	// internal server sends is not rate-limited.
	StanzaRate  float64 `yaml:"stanza_rate"`
	StanzaBurst int     `yaml:"stanza_burst"`
}

// LogConfig chooses how xmppedge logs.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug|info|warn|error (default info)
	Format string `yaml:"format"` // text|json (default text)
}

// Load reads the file at path, parses it strictly, sets Dir to the file's
// folder, applies defaults and validates. When only validation fails it
// returns the config together with an error of type FieldErrors listing every
// problem (unknown keys and wrong types included); when the file cannot be
// read or is not YAML it returns a nil config and an error naming the file
// (and the line).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: cannot read the configuration file: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: cannot tell the folder of %s: %w", path, err)
	}
	cfg, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		if fe, ok := err.(FieldErrors); ok {
			return cfg, fe
		}
		var se *SyntaxError
		if errors.As(err, &se) {
			se.File = path
		}
		return nil, err
	}
	return cfg, nil
}

// Parse is Load for a file's content; dir is the folder relative paths are
// resolved against ("" means the working directory).
func Parse(data []byte, dir string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &SyntaxError{Err: err}
	}
	cfg := &Config{}
	var problems FieldErrors
	lines := newLineIndex()
	if len(root.Content) > 0 {
		problems = append(problems, checkKeys(root.Content[0], configType, "", lines)...)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, &SyntaxError{Err: err}
		}
		problems = append(problems, decodeProblems(te, lines, problems)...)
	}
	if err := checkSingleDocument(dec); err != nil {
		problems = append(problems, *err)
	}
	cfg.Dir = dir
	// A setting that could not be read is left zero; do not also report it
	// as missing.
	for _, p := range cfg.Validate() {
		if !coveredBy(p.Field, problems) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return cfg, problems
	}
	return cfg, nil
}

// SyntaxError reports a file that is not valid YAML. Err is yaml.v3's
// message, which names the line.
type SyntaxError struct {
	File string // set by Load
	Err  error
}

func (e *SyntaxError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("config: %s is not valid YAML: %v", e.File, e.Err)
	}
	return fmt.Sprintf("config: the file is not valid YAML: %v", e.Err)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// coveredBy reports whether field, or a setting around or inside it, already
// has a problem in problems.
func coveredBy(field string, problems FieldErrors) bool {
	if field == "" {
		return false
	}
	for _, p := range problems {
		if p.Field == "" || strings.HasPrefix(p.Problem, "unknown setting") {
			continue
		}
		if p.Field == field || strings.HasPrefix(field, p.Field+".") || strings.HasPrefix(field, p.Field+"[") ||
			strings.HasPrefix(p.Field, field+".") || strings.HasPrefix(p.Field, field+"[") {
			return true
		}
	}
	return false
}

// checkSingleDocument refuses a second YAML document ("---") in the file: it
// would be silently ignored.
func checkSingleDocument(dec *yaml.Decoder) *FieldError {
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return &FieldError{Field: "", Problem: fmt.Sprintf("line %d: a second YAML document starts here; put everything in one document", extra.Line)}
	}
	return nil
}

// ApplyDefaults fills every setting left out (or zero) with its default. Load,
// Parse and Validate call it; it is idempotent.
func (c *Config) ApplyDefaults() {
	c.applyPolicyAuditDefaults()
	c.applyOpsDefaults()
	c.applyClusterDefaults()
	if len(c.Inside.Allow) == 0 {
		c.Inside.Allow = append([]string(nil), defaultInsideAllow...)
	}
	if c.Outside.RequireTLS == nil {
		t := true
		c.Outside.RequireTLS = &t
	}
	if c.Outside.DialbackShortcut == nil {
		t := true
		c.Outside.DialbackShortcut = &t
	}
	if c.TLS.SystemRoots == nil {
		t := true
		c.TLS.SystemRoots = &t
	}
	setDefault(&c.Limits.MaxStanzaSize, DefaultMaxStanzaSize)
	setDefault(&c.Limits.QueueSize, DefaultQueueSize)
	setDefault(&c.Limits.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&c.Limits.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.Limits.ConnectionsPerIP, DefaultConnectionsPerIP)
	setDefault(&c.Limits.NewConnectionsPerIP, DefaultNewConnectionsPerIP)
	setDefault(&c.Limits.StanzaRate, DefaultStanzaRate)
	setDefault(&c.Limits.StanzaBurst, DefaultStanzaBurst)
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
}

// ResolvePath returns p if it is absolute (or empty), else p joined with Dir.
func (c *Config) ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Dir == "" {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// ParsedAllow returns inside.allow as prefixes. It is complete after a
// successful Validate; before, it holds the entries that parse.
func (c *Config) ParsedAllow() []netip.Prefix {
	if c.allow != nil {
		return c.allow
	}
	var out []netip.Prefix
	for _, s := range c.Inside.Allow {
		if p, problem := parseAllow(s); problem == "" {
			out = append(out, p)
		}
	}
	return out
}

// ParsedDNSAllow returns inside.dns_allow (default: inside.allow) as
// prefixes. It is complete after a successful Validate; before, it holds
// the entries that parse.
func (c *Config) ParsedDNSAllow() []netip.Prefix {
	if c.dnsAllow != nil {
		return c.dnsAllow
	}
	list := c.Inside.DNSAllow
	if len(list) == 0 {
		list = c.Inside.Allow
	}
	var out []netip.Prefix
	for _, s := range list {
		if p, problem := parseAllow(s); problem == "" {
			out = append(out, p)
		}
	}
	return out
}

// FieldError is one problem with one setting.
type FieldError struct {
	Field   string // dotted path like "inside.server" or "tls.certificates[0].key_file"; "" for the file as a whole
	Problem string // what is wrong and how to fix it
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// FieldErrors lists every problem found in a configuration.
type FieldErrors []FieldError

// Error joins the problems, one "FIELD: PROBLEM" per line.
func (errs FieldErrors) Error() string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Fields returns the Field of every problem, in order (handy in tests and
// for highlighting).
func (errs FieldErrors) Fields() []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Field
	}
	return out
}

// setDefault sets *dst to def when it has its zero value (not set in the
// file).
func setDefault[T comparable](dst *T, def T) {
	var zero T
	if *dst == zero {
		*dst = def
	}
}
