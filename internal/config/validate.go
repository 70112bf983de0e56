package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"github.com/xmppedge/xmppedge/internal/resolve"
)

// Bounds checked by Validate.
const (
	MinMaxStanzaSize  = 10000
	MaxMaxStanzaSize  = 16 << 20
	MaxQueueSize      = 1_000_000
	MinConnectTimeout = Duration(100 * time.Millisecond)
	MaxConnectTimeout = Duration(5 * time.Minute)
	MinIdleTimeout    = Duration(time.Second)
	MaxIdleTimeout    = Duration(7 * 24 * time.Hour)
	// MaxConnectionsPerIP is the gateway's own bound on incoming
	// connections per node.
	MaxConnectionsPerIP    = 20000
	MaxNewConnectionsPerIP = 10000.0
	MaxStanzaRate          = 1_000_000.0
	MaxStanzaBurst         = 10_000_000
)

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// Validate applies defaults, normalises (domains to lowercase A-labels, DNS
// servers to IP:PORT, log settings to lowercase) and checks every setting. It
// returns every problem found, or nil. It reads the file system to check that
// the files named exist.
func (c *Config) Validate() FieldErrors {
	c.ApplyDefaults()
	v := &validator{}
	c.validateDomains(v)
	c.validateListeners(v)
	c.validateAllow(v)
	c.validateDNS(v)
	c.validateTLS(v)
	c.validateDialback(v)
	c.validateLimits(v)
	c.validateLog(v)
	c.validatePolicy(v)
	c.validateAudit(v)
	c.validateOps(v)
	c.validateCluster(v)
	if len(v.problems) == 0 {
		return nil
	}
	return v.problems
}

type validator struct{ problems FieldErrors }

func (v *validator) add(field, format string, args ...any) {
	v.problems = append(v.problems, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (c *Config) validateDomains(v *validator) {
	if len(c.Domains) == 0 {
		v.add("domains", "required: list the local domains served by the internal server, like [company.example]")
		return
	}
	seen := make(map[string]int)
	for i, d := range c.Domains {
		field := fmt.Sprintf("domains[%d]", i)
		norm, problem := normalizeDomain(d)
		if problem != "" {
			v.add(field, "%q is not a valid domain name: %s", d, problem)
			continue
		}
		if first, dup := seen[norm]; dup {
			v.add(field, "%q is the same domain as domains[%d]; list it once", d, first)
			continue
		}
		seen[norm] = i
		c.Domains[i] = norm
	}
}

// normalizeDomain returns d as a lowercase A-label without a trailing dot, or
// a problem.
func normalizeDomain(d string) (string, string) {
	n := strings.TrimSuffix(strings.TrimSpace(d), ".")
	if n == "" {
		return "", "it is empty"
	}
	if _, err := netip.ParseAddr(strings.Trim(n, "[]")); err == nil {
		return "", "an IP address cannot be a local domain"
	}
	a := strings.ToLower(n)
	if !isASCII(n) {
		var err error
		if a, err = idna.Lookup.ToASCII(n); err != nil {
			return "", fmt.Sprintf("it cannot be converted to an ASCII (A-label) name: %v", err)
		}
	}
	if problem := resolve.HostnameProblem(a); problem != "" {
		return "", problem
	}
	// Labels already in A-label form must decode, and a name must be
	// written the same way in both forms.
	if strings.Contains(a, "xn--") {
		if _, err := idna.Lookup.ToUnicode(a); err != nil {
			return "", fmt.Sprintf("it has an invalid A-label (xn--): %v", err)
		}
	}
	return a, ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// listenAddr is a parsed listener address; host "*" means every interface.
type listenAddr struct {
	field string
	host  string
	port  int
}

func (c *Config) validateListeners(v *validator) {
	var all []listenAddr
	check := func(field string, addrs []string) {
		for i, a := range addrs {
			f := fmt.Sprintf("%s[%d]", field, i)
			la, problem := parseHostPort(a, true)
			if problem != "" {
				v.add(f, "%s", problem)
				continue
			}
			la.field = f
			for _, other := range all {
				if la.port != 0 && la.port == other.port && (la.host == other.host || la.host == "*" || other.host == "*") {
					v.add(f, "address %q is already used by %s; each listener needs its own address", a, other.field)
					break
				}
			}
			all = append(all, la)
		}
	}
	if len(c.Inside.Listen) == 0 {
		v.add("inside.listen", "required: the address(es) where the internal server connects, like [\"127.0.0.10:5269\"]")
	}
	check("inside.listen", c.Inside.Listen)
	if len(c.Outside.Listen) == 0 && len(c.Outside.ListenTLS) == 0 {
		v.add("outside.listen", "required: give outside.listen (STARTTLS, usually port 5269) or outside.listen_tls (direct TLS, usually 5270), or both")
	}
	check("outside.listen", c.Outside.Listen)
	check("outside.listen_tls", c.Outside.ListenTLS)

	if c.Inside.Server == "" {
		v.add("inside.server", "required: the internal XMPP server's s2s address, like \"127.0.0.2:5269\"")
		return
	}
	server, problem := parseHostPort(c.Inside.Server, false)
	if problem != "" {
		v.add("inside.server", "%s", problem)
		return
	}
	for _, l := range all {
		if l.host == server.host && l.port == server.port {
			v.add("inside.server", "%q is xmppedge's own listener %s; give the internal server's address", c.Inside.Server, l.field)
			break
		}
	}
}

// parseHostPort checks "host:port". Listeners may leave the host out (every
// interface) and use port 0 (any free port); a server address may not.
func parseHostPort(s string, listener bool) (listenAddr, string) {
	example := "like \"127.0.0.1:5269\""
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		return listenAddr{}, fmt.Sprintf("%q is not host:port (%s; IPv6 in brackets, like \"[::1]:5269\")", s, example)
	}
	port, err := strconv.Atoi(portText)
	minPort := 1
	if listener {
		minPort = 0
	}
	if err != nil || port < minPort || port > 65535 {
		return listenAddr{}, fmt.Sprintf("%q has an invalid port %q (%d-65535)", s, portText, minPort)
	}
	switch {
	case host == "":
		if !listener {
			return listenAddr{}, fmt.Sprintf("%q has no host (%s)", s, example)
		}
		host = "*"
	default:
		if ip, err := netip.ParseAddr(host); err == nil {
			ip = ip.Unmap()
			if ip.IsUnspecified() && listener {
				host = "*"
			} else {
				host = ip.String()
			}
			break
		}
		h := strings.ToLower(strings.TrimSuffix(host, "."))
		if problem := resolve.HostnameProblem(h); problem != "" {
			return listenAddr{}, fmt.Sprintf("%q: host %q is neither an IP address nor a valid host name: %s", s, host, problem)
		}
		host = h
	}
	return listenAddr{host: host, port: port}, ""
}

func (c *Config) validateAllow(v *validator) {
	c.allow = parseAllowList(v, "inside.allow", c.Inside.Allow)
	if len(c.Inside.DNSAllow) == 0 {
		c.dnsAllow = c.allow // the default, reported once
	} else {
		c.dnsAllow = parseAllowList(v, "inside.dns_allow", c.Inside.DNSAllow)
	}
}

// parseAllowList parses the allowlist at field; nil when an entry does not
// parse (each such entry is reported).
func parseAllowList(v *validator, field string, list []string) []netip.Prefix {
	prefixes := make([]netip.Prefix, 0, len(list))
	ok := true
	for i, s := range list {
		p, problem := parseAllow(s)
		if problem != "" {
			v.add(fmt.Sprintf("%s[%d]", field, i), "%s", problem)
			ok = false
			continue
		}
		prefixes = append(prefixes, p)
	}
	if !ok {
		return nil
	}
	return prefixes
}

// parseAllow parses one allowlist entry: a CIDR, or a single IP address.
func parseAllow(s string) (netip.Prefix, string) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()), ""
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("%q is not a network in CIDR notation, like \"10.0.0.0/8\" or \"fd00::/8\"", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Sprintf("%q has bits set after the prefix length; did you mean %q?", s, p.Masked().String())
	}
	return p, ""
}

func (c *Config) validateDNS(v *validator) {
	for i, s := range c.DNS.Servers {
		field := fmt.Sprintf("dns.servers[%d]", i)
		if ip, err := netip.ParseAddr(s); err == nil {
			c.DNS.Servers[i] = netip.AddrPortFrom(ip, 53).String()
			continue
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			v.add(field, "%q is not an IP address with an optional port, like \"127.0.0.53\" or \"192.0.2.53:5300\" (IPv6: \"[2001:db8::53]:53\")", s)
			continue
		}
		if ap.Port() == 0 {
			v.add(field, "%q has port 0; leave the port out for 53", s)
			continue
		}
		c.DNS.Servers[i] = ap.String()
	}
}

func (c *Config) validateTLS(v *validator) {
	for i, cert := range c.TLS.Certificates {
		field := fmt.Sprintf("tls.certificates[%d]", i)
		if cert.CertFile == "" {
			v.add(field+".cert_file", "required: the PEM file with the certificate chain")
		} else if problem := c.fileProblem(cert.CertFile); problem != "" {
			v.add(field+".cert_file", "%s", problem)
		}
		if cert.KeyFile == "" {
			v.add(field+".key_file", "required: the PEM file with the certificate's private key")
		} else if problem := c.fileProblem(cert.KeyFile); problem != "" {
			v.add(field+".key_file", "%s", problem)
		}
	}
	for i, f := range c.TLS.CAFiles {
		field := fmt.Sprintf("tls.ca_files[%d]", i)
		if f == "" {
			v.add(field, "empty file name; remove the entry or name a PEM file of CA certificates")
		} else if problem := c.fileProblem(f); problem != "" {
			v.add(field, "%s", problem)
		}
	}
}

// fileProblem says why the file named p (relative to Dir) cannot be used, or
// "" when it is a readable regular file.
func (c *Config) fileProblem(p string) string {
	path := c.ResolvePath(p)
	f, err := os.Open(path)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Sprintf("file %s does not exist", path)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Sprintf("file %s cannot be read: permission denied", path)
		}
		return fmt.Sprintf("file %s cannot be opened: %v", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("file %s cannot be examined: %v", path, err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Sprintf("%s is not a regular file", path)
	}
	return ""
}

func (c *Config) validateDialback(v *validator) {
	const field = "dialback.secret_file"
	if c.Dialback.SecretFile == "" {
		v.add(field, "required: the file holding the dialback secret shared by every node (created on first start if missing), like \"dialback.secret\"")
		return
	}
	path := c.ResolvePath(c.Dialback.SecretFile)
	_, err := os.Stat(path)
	switch {
	case err == nil:
		if problem := c.fileProblem(c.Dialback.SecretFile); problem != "" {
			v.add(field, "%s", problem)
		}
	case errors.Is(err, fs.ErrNotExist) && c.Cluster != nil:
		// A secret generated on each node would differ: a partner asking
		// one node about a key another node sent would be told invalid.
		v.add(field, "%s does not exist: every node of a cluster must hold the same secret, so none is generated; create it once (head -c 32 /dev/urandom | base64 > %s; chmod 600 %s) and copy it to every node", path, path, path)
	case errors.Is(err, fs.ErrNotExist):
		dir := filepath.Dir(path)
		dinfo, derr := os.Stat(dir)
		if derr != nil || !dinfo.IsDir() {
			v.add(field, "%s does not exist yet, and neither does its folder %s: create the folder (the secret is generated there on first start)", path, dir)
		}
	default:
		v.add(field, "%s cannot be examined: %v", path, err)
	}
}

func (c *Config) validateLimits(v *validator) {
	l := c.Limits
	if l.MaxStanzaSize < MinMaxStanzaSize || l.MaxStanzaSize > MaxMaxStanzaSize {
		v.add("limits.max_stanza_size", "%d is out of range: give a size in bytes between %d and %d (16 MiB); the default is %d", l.MaxStanzaSize, MinMaxStanzaSize, MaxMaxStanzaSize, DefaultMaxStanzaSize)
	}
	if l.QueueSize < 1 || l.QueueSize > MaxQueueSize {
		v.add("limits.queue_size", "%d is out of range: give a number of stanzas between 1 and %d; the default is %d", l.QueueSize, MaxQueueSize, DefaultQueueSize)
	}
	if l.ConnectTimeout < MinConnectTimeout || l.ConnectTimeout > MaxConnectTimeout {
		v.add("limits.connect_timeout", "%s is out of range: give a duration between %s and %s; the default is %s", l.ConnectTimeout, MinConnectTimeout, MaxConnectTimeout, DefaultConnectTimeout)
	}
	if l.IdleTimeout < MinIdleTimeout || l.IdleTimeout > MaxIdleTimeout {
		v.add("limits.idle_timeout", "%s is out of range: give a duration between %s and %s; the default is %s", l.IdleTimeout, MinIdleTimeout, MaxIdleTimeout, DefaultIdleTimeout)
	}
	if l.ConnectionsPerIP < 1 || l.ConnectionsPerIP > MaxConnectionsPerIP {
		v.add("limits.connections_per_ip", "%d is out of range: give a number of concurrent connections per source address between 1 and %d; the default is %d", l.ConnectionsPerIP, MaxConnectionsPerIP, DefaultConnectionsPerIP)
	}
	// The negated comparisons also refuse NaN (.nan in YAML).
	if !(l.NewConnectionsPerIP > 0 && l.NewConnectionsPerIP <= MaxNewConnectionsPerIP) {
		v.add("limits.new_connections_per_ip", "%v is out of range: give new connections per second per source address, more than 0 and at most %v (e.g. 0.5 for one every 2 seconds); the default is %v", l.NewConnectionsPerIP, MaxNewConnectionsPerIP, DefaultNewConnectionsPerIP)
	}
	if !(l.StanzaRate > 0 && l.StanzaRate <= MaxStanzaRate) {
		v.add("limits.stanza_rate", "%v is out of range: give stanzas per second per remote domain, more than 0 and at most %v; the default is %v", l.StanzaRate, MaxStanzaRate, DefaultStanzaRate)
	}
	if l.StanzaBurst < 1 || l.StanzaBurst > MaxStanzaBurst {
		v.add("limits.stanza_burst", "%d is out of range: give a number of stanzas between 1 and %d; the default is %d", l.StanzaBurst, MaxStanzaBurst, DefaultStanzaBurst)
	}
}

func (c *Config) validateLog(v *validator) {
	c.Log.Level = strings.ToLower(strings.TrimSpace(c.Log.Level))
	c.Log.Format = strings.ToLower(strings.TrimSpace(c.Log.Format))
	if !slices.Contains(logLevels, c.Log.Level) {
		v.add("log.level", "%q is not a log level: use one of %s", c.Log.Level, strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		v.add("log.format", "%q is not a log format: use one of %s", c.Log.Format, strings.Join(logFormats, ", "))
	}
}
