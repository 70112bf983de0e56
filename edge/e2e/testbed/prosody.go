package testbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Bounds on the time Prosody gets for each step.
const (
	prosodyStartTimeout    = 20 * time.Second
	prosodyStopTimeout     = 5 * time.Second
	prosodyctlTimeout      = 20 * time.Second
	prosodyPortsCheckEvery = 20 * time.Millisecond
)

// ProsodyOptions configures one Prosody server.
type ProsodyOptions struct {
	Domain string            // the VirtualHost, e.g. "company.test"
	IP     string            // e.g. "127.0.0.2": interfaces = { IP }; c2s on IP:5222, s2s on IP:5269
	DNS    string            // "IP:PORT" of the DNS server libunbound forwards to ("" = 127.0.0.53:5300)
	Users  map[string]string // localpart -> password, registered with prosodyctl before start

	// CertPEM and KeyPEM are the certificate (chain) and key for Domain.
	// Both nil: the test bed makes a self-signed certificate for Domain.
	CertPEM, KeyPEM []byte
	// CAFile is a PEM file of extra trusted roots (ssl = { cafile = ... }),
	// or "". With a root that validates the peer's certificate, Prosody
	// authenticates s2s with SASL EXTERNAL instead of dialback.
	CAFile string

	RequireEncryption bool   // s2s_require_encryption
	SecureAuth        bool   // s2s_secure_auth: refuse peers whose certificate does not validate (no dialback fallback)
	DialbackSecret    string // dialback_secret; "" = Prosody's default (a random per-process UUID)
	Extra             string // extra Lua config lines, appended to the global section
	// S2SDirectTLSPort, when not 0, is a direct TLS (XEP-0368) s2s
	// listener on IP (s2s_direct_tls_ports); its certificate is chosen by
	// SNI from the certificates folder.
	S2SDirectTLSPort int
	// LogLevel is the least level logged: "" = debug (the tests read the
	// debug log); benchmarks use "warn".
	LogLevel string
	// Modules are loaded besides the test bed's own (modules_enabled),
	// e.g. "smacks" (XEP-0198, on s2s too) or "s2s_bidi" (XEP-0288).
	Modules []string
}

// Prosody is one real Prosody server run in the foreground with its own
// config, data, log and certificate folders under t.TempDir().
type Prosody struct {
	server // the process, its log (LogFile), Stop, WaitLog, ...

	Opts   ProsodyOptions
	Dir    string // the instance's folder
	Config string // the config file
}

// StartProsody writes a config for opts, registers opts.Users, starts
// `prosody --config FILE -F` in its own process group and returns once c2s
// and s2s accept connections. The server is stopped by t.Cleanup.
func StartProsody(t testing.TB, opts ProsodyOptions) *Prosody {
	t.Helper()
	Require(t)
	if opts.Domain == "" || opts.IP == "" {
		t.Fatalf("testbed: StartProsody needs Domain and IP")
	}
	if opts.DNS == "" {
		opts.DNS = "127.0.0.53:5300"
	}
	p := &Prosody{server: newServer(t, "Prosody", opts.Domain, prosodyStopTimeout), Opts: opts}
	p.tailOf = p.tail
	p.checkPortsFree(p.listenAddrs())
	cfg := p.writeFiles()
	p.registerUsers()
	p.start(cfg)
	p.waitAccepting()
	return p
}

// writeFiles makes p.Dir with its data and certs folders, writes the
// certificate and key (self-signed unless given) and the config, and
// returns the config.
func (p *Prosody) writeFiles() []byte {
	t, opts := p.t, p.Opts
	t.Helper()
	p.Dir = filepath.Join(t.TempDir(), "prosody-"+opts.Domain)
	for _, d := range []string{"data", "certs"} {
		if err := os.MkdirAll(filepath.Join(p.Dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p.LogFile = filepath.Join(p.Dir, "prosody.log")
	p.Config = filepath.Join(p.Dir, "prosody.cfg.lua")

	certPEM, keyPEM := opts.CertPEM, opts.KeyPEM
	if certPEM == nil || keyPEM == nil {
		var err error
		certPEM, keyPEM, err = selfSigned(opts.Domain)
		if err != nil {
			t.Fatalf("testbed: self-signed certificate for %s: %v", opts.Domain, err)
		}
	}
	certFile := filepath.Join(p.Dir, "certs", opts.Domain+".crt")
	keyFile := filepath.Join(p.Dir, "certs", opts.Domain+".key")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := []byte(p.config(certFile, keyFile))
	if err := os.WriteFile(p.Config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// registerUsers registers p.Opts.Users with prosodyctl, in name order.
func (p *Prosody) registerUsers() {
	t, opts := p.t, p.Opts
	t.Helper()
	users := make([]string, 0, len(opts.Users))
	for u := range opts.Users {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		ctx, cancel := context.WithTimeout(context.Background(), prosodyctlTimeout)
		out, err := exec.CommandContext(ctx, "prosodyctl", "--config", p.Config, "register", u, opts.Domain, opts.Users[u]).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("testbed: prosodyctl register %s@%s: %v\n%s", u, opts.Domain, err, out)
		}
	}
}

// start runs `prosody --config FILE -F` in its own process group, its
// console to console.log, and registers the cleanup that stops it (and
// keeps its log and config, cfg, when XMPPEDGE_E2E_KEEP names a folder).
func (p *Prosody) start(cfg []byte) {
	p.t.Helper()
	p.launch(exec.Command("prosody", "--config", p.Config, "-F"), p.Dir, func() map[string][]byte {
		return map[string][]byte{p.Opts.Domain + ".log": []byte(p.Log()), p.Opts.Domain + ".cfg.lua": cfg}
	}, 60)
}

// waitAccepting returns once c2s and s2s accept connections, and fails
// the test when Prosody exits or does not accept within
// prosodyStartTimeout.
func (p *Prosody) waitAccepting() {
	t, opts := p.t, p.Opts
	t.Helper()
	deadline := time.Now().Add(prosodyStartTimeout)
	for _, addr := range p.listenAddrs() {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.done:
				t.Fatalf("testbed: Prosody %s exited during start (%v):\n%s", opts.Domain, p.waitErr, p.tail(60))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("testbed: Prosody %s: %s not accepting after %v:\n%s", opts.Domain, addr, prosodyStartTimeout, p.tail(60))
			}
			time.Sleep(prosodyPortsCheckEvery)
		}
	}
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, name)
}

func luaQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\x00", `\0`)
	return `"` + r.Replace(s) + `"`
}

func (p *Prosody) config(certFile, keyFile string) string {
	o := p.Opts
	dnsIP, dnsPort, err := net.SplitHostPort(o.DNS)
	if err != nil {
		p.t.Fatalf("testbed: DNS %q: %v", o.DNS, err)
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("-- written by xmppedge's e2e test bed; only this file is read (no conf.d)")
	w("run_as_root = true")
	w("daemonize = false")
	w("pidfile = %s", luaQuote(filepath.Join(p.Dir, "prosody.pid")))
	w("data_path = %s", luaQuote(filepath.Join(p.Dir, "data")))
	w("certificates = %s", luaQuote(filepath.Join(p.Dir, "certs")))
	level := o.LogLevel
	if level == "" {
		level = "debug"
	}
	w("log = { { levels = { min = %s }, to = \"file\", filename = %s } }", luaQuote(level), luaQuote(p.LogFile))
	w("interfaces = { %s }", luaQuote(o.IP))
	w("c2s_ports = { 5222 }")
	w("s2s_ports = { 5269 }")
	w("c2s_direct_tls_ports = { }")
	if o.S2SDirectTLSPort != 0 {
		w("s2s_direct_tls_ports = { %d }", o.S2SDirectTLSPort)
	} else {
		w("s2s_direct_tls_ports = { }")
	}
	w("legacy_ssl_ports = { }")
	w("use_ipv6 = false")
	w("network_settings = { nagle = false }")
	w("unbound = { resolvconf = false; hoststxt = false; forward = { %s }; options = { [\"local-zone:\"] = \"test. transparent\" } }", luaQuote(dnsIP+"@"+dnsPort))
	var modules []string
	for _, m := range append([]string{"roster", "saslauth", "tls", "dialback", "disco", "ping", "version", "posix"}, o.Modules...) {
		modules = append(modules, luaQuote(m))
	}
	w("modules_enabled = { %s }", strings.Join(modules, ", "))
	w("authentication = \"internal_plain\"")
	w("storage = \"internal\"")
	w("c2s_require_encryption = false")
	w("allow_unencrypted_plain_auth = false")
	w("s2s_require_encryption = %v", o.RequireEncryption)
	w("s2s_secure_auth = %v", o.SecureAuth)
	w("s2s_timeout = 10")
	if o.DialbackSecret != "" {
		w("dialback_secret = %s", luaQuote(o.DialbackSecret))
	}
	if o.CAFile != "" {
		w("ssl = { certificate = %s; key = %s; cafile = %s }", luaQuote(certFile), luaQuote(keyFile), luaQuote(o.CAFile))
	} else {
		w("ssl = { certificate = %s; key = %s }", luaQuote(certFile), luaQuote(keyFile))
	}
	if o.Extra != "" {
		w("%s", o.Extra)
	}
	w("")
	w("VirtualHost %s", luaQuote(o.Domain))
	return b.String()
}

// tail is the last n lines of the log, then of the console.
func (p *Prosody) tail(n int) string {
	b, _ := os.ReadFile(p.LogFile)
	if c, _ := os.ReadFile(filepath.Join(p.Dir, "console.log")); len(c) > 0 {
		b = append(append(b, "--- console ---\n"...), c...)
	}
	return string(lastLines(b, n))
}

// LogLines returns the log lines that contain substr.
func (p *Prosody) LogLines(substr string) []string {
	var out []string
	for _, l := range strings.Split(p.Log(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// C2SAddr is the client listener, IP:5222.
func (p *Prosody) C2SAddr() string { return net.JoinHostPort(p.Opts.IP, "5222") }

// listenAddrs are the addresses Prosody listens on.
func (p *Prosody) listenAddrs() []string {
	addrs := []string{p.C2SAddr(), p.S2SAddr()}
	if p.Opts.S2SDirectTLSPort != 0 {
		addrs = append(addrs, net.JoinHostPort(p.Opts.IP, fmt.Sprint(p.Opts.S2SDirectTLSPort)))
	}
	return addrs
}

// S2SAddr is the server listener, IP:5269.
func (p *Prosody) S2SAddr() string { return net.JoinHostPort(p.Opts.IP, "5269") }

// PID is the Prosody process's id (for measuring its CPU time).
func (p *Prosody) PID() int { return p.cmd.Process.Pid }
