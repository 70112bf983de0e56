package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bounds on the time ejabberd gets for each step.
const (
	ejabberdStartTimeout = 40 * time.Second
	ejabberdStopTimeout  = 10 * time.Second
	ejabberdCheckEvery   = 50 * time.Millisecond
)

// Debian's ejabberd (23.01 in Debian 12) installs its Erlang application
// as /usr/lib/<multiarch>/ejabberd-<version>, the folder its ejabberdctl
// gives erl as ERL_LIBS; it is started with Debian's erl.
const (
	ejabberdAppGlob = "/usr/lib/*/ejabberd-*/ebin/ejabberd.app"
	ejabberdErl     = "/usr/bin/erl"
	ejabberdApt     = "apt-get install -y ejabberd"
	// ejabberdDistBase + the last byte of the instance's address is its
	// Erlang distribution port on 127.0.0.1 (no epmd), where its node
	// name's host, localhost, is.
	ejabberdDistBase   = 42000
	ejabberdCtlTimeout = 30 * time.Second
)

// EjabberdOptions configures one ejabberd server.
type EjabberdOptions struct {
	Domain string // the served host, e.g. "partner.test"
	IP     string // an IPv4 loopback address; the listeners bind it only: c2s IP:5222, s2s IP:5269 (Erlang distribution: 127.0.0.1:42000+IP's last byte)
	// DNS is the "IP:PORT" of the DNS server Erlang's resolver asks for
	// SRV records (ERL_INETRC's nameserver); "" = 127.0.0.53:5300.
	DNS string
	// Hosts are the names ejabberd resolves through libc (the A/AAAA
	// lookup of an SRV target: net:getaddrinfo), name -> IP. They go into
	// a private /etc/hosts, bind-mounted in a mount namespace of
	// ejabberd's own: the machine's file is not touched.
	Hosts map[string]string
	Users map[string]string // localpart -> password, registered at start (ejabberd_admin:register, what `ejabberdctl register` runs)

	// CertPEM and KeyPEM are the certificate (chain) and key for Domain
	// (certfiles). Both nil: a self-signed certificate.
	CertPEM, KeyPEM []byte
	// CAFile is ca_file: the roots ejabberd trusts when verifying a
	// peer's certificate (SASL EXTERNAL); "" = ejabberd's default (the
	// system's bundle).
	CAFile string

	// StartTLS is s2s_use_starttls: "false", "optional" or "required"
	// ("" = "required").
	StartTLS string
	// SecureAuth leaves mod_s2s_dialback out: ejabberd then authenticates
	// s2s streams by certificate (SASL EXTERNAL) only, both ways.
	SecureAuth bool
	// DirectTLSPort, when not 0, adds an ejabberd_s2s_in listener with
	// tls: true (XEP-0368 direct TLS, inbound) on IP:DirectTLSPort.
	// (Outbound, ejabberd 23.01 asks for both _xmpps-server and
	// _xmpp-server SRV records and connects with direct TLS to an
	// _xmpps-server target: no option needed.)
	DirectTLSPort int
	Extra         string // extra top-level ejabberd.yml lines
}

// Ejabberd is one real ejabberd run in the foreground (Debian's erl
// directly, as ejabberdctl foreground would, but as the current user) with
// its own config, spool (Mnesia), log folder, resolver config and Erlang
// node name under t.TempDir().
type Ejabberd struct {
	server // the process, its log (LogFile: ejabberd.log, debug level), Stop, WaitLog, ...

	Opts   EjabberdOptions
	Dir    string // the instance's folder
	Config string // ejabberd.yml
	Node   string // the Erlang node name, ejabberd_<ip>_<random>@localhost

	cookie string // the Erlang cookie (-setcookie), for Ctl
}

var (
	ejabberdOnce sync.Once
	ejabberdErr  string
	ejabberdLibs string // ERL_LIBS: the folder holding ejabberd-<version>
)

// RequireEjabberd is Require for the tests that run ejabberd too. When
// Debian's ejabberd (or a working unshare --mount, for the private hosts
// file) is missing it fails the test in CI (CI set: make deps installs
// it) and skips it elsewhere, naming the apt-get command to run, as the
// suite does for testssl.sh and promtool; XMPPEDGE_E2E=skip skips it as it
// skips every end-to-end test.
func RequireEjabberd(t testing.TB) {
	t.Helper()
	Require(t)
	ejabberdOnce.Do(func() {
		apps, _ := filepath.Glob(ejabberdAppGlob)
		if len(apps) == 0 {
			ejabberdErr = "ejabberd not installed (no " + ejabberdAppGlob + ")"
			return
		}
		sort.Strings(apps)
		ejabberdLibs = filepath.Dir(filepath.Dir(filepath.Dir(apps[len(apps)-1])))
		for _, bin := range []string{ejabberdErl, "unshare", "mount"} {
			if _, err := exec.LookPath(bin); err != nil {
				ejabberdErr = bin + " not found"
				return
			}
		}
		// The private hosts file needs a mount namespace (root, or
		// CAP_SYS_ADMIN in a container).
		if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
			ejabberdErr = fmt.Sprintf("unshare --mount does not work here (%v: %s): ejabberd's private /etc/hosts needs root or CAP_SYS_ADMIN", err, bytes.TrimSpace(out))
			return
		}
	})
	if ejabberdErr == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("end-to-end prerequisites missing (%s). Install them with:\n\t%s\n(make deps does, and stops the package's own service)", ejabberdErr, ejabberdApt)
	}
	t.Skipf("ejabberd tests skipped: %s (install it with `%s`, then stop its own service; in CI this is a failure)", ejabberdErr, ejabberdApt)
}

// StartEjabberd writes the config, inetrc and hosts file for opts,
// starts ejabberd in its own process group and mount namespace, registers
// opts.Users and returns once c2s and s2s accept connections and the users
// are registered. The server is stopped by t.Cleanup.
func StartEjabberd(t testing.TB, opts EjabberdOptions) *Ejabberd {
	t.Helper()
	RequireEjabberd(t)
	if opts.Domain == "" || opts.IP == "" {
		t.Fatalf("testbed: StartEjabberd needs Domain and IP")
	}
	if net.ParseIP(opts.IP).To4() == nil {
		t.Fatalf("testbed: StartEjabberd: IP %q is not an IPv4 address", opts.IP)
	}
	if opts.DNS == "" {
		opts.DNS = "127.0.0.53:5300"
	}
	if opts.StartTLS == "" {
		opts.StartTLS = "required"
	}
	switch opts.StartTLS {
	case "false", "optional", "required":
	default:
		t.Fatalf("testbed: StartEjabberd: StartTLS %q (want false, optional or required)", opts.StartTLS)
	}
	// SIGTERM: the Erlang VM stops its applications (init:stop);
	// erl_child_setup, in a session of its own, exits with the VM.
	e := &Ejabberd{server: newServer(t, "ejabberd", opts.Domain, ejabberdStopTimeout), Opts: opts}
	e.tailOf = e.tail
	e.checkPortsFree(e.ports())
	cfg := e.writeFiles()
	e.start(cfg)
	e.waitReady()
	return e
}

func (e *Ejabberd) ports() []string {
	addrs := []string{e.C2SAddr(), e.S2SAddr(), e.distAddr()}
	if e.Opts.DirectTLSPort != 0 {
		addrs = append(addrs, e.DirectTLSAddr())
	}
	return addrs
}

// writeFiles makes e.Dir with its spool, logs and config folders, and
// writes the certificate, ejabberd.yml, inetrc and hosts file. It returns
// ejabberd.yml.
func (e *Ejabberd) writeFiles() []byte {
	t, opts := e.t, e.Opts
	t.Helper()
	e.Dir = filepath.Join(t.TempDir(), "ejabberd-"+opts.Domain)
	for _, d := range []string{"spool", "logs", "etc"} {
		if err := os.MkdirAll(filepath.Join(e.Dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	e.Node = "ejabberd_" + strings.ReplaceAll(opts.IP, ".", "_") + "_" + hex.EncodeToString(rnd[:]) + "@localhost"
	e.LogFile = filepath.Join(e.Dir, "logs", "ejabberd.log")
	e.Config = filepath.Join(e.Dir, "etc", "ejabberd.yml")

	certPEM, keyPEM := opts.CertPEM, opts.KeyPEM
	if certPEM == nil || keyPEM == nil {
		var err error
		certPEM, keyPEM, err = selfSigned(opts.Domain)
		if err != nil {
			t.Fatalf("testbed: self-signed certificate for %s: %v", opts.Domain, err)
		}
	}
	// certfiles takes PEM files holding a certificate and its key.
	certFile := filepath.Join(e.Dir, "etc", opts.Domain+".pem")
	if err := os.WriteFile(certFile, append(append([]byte{}, certPEM...), keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := []byte(e.config(certFile))
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(e.Dir, "etc", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ejabberd.yml", cfg)
	write("inetrc", []byte(e.inetrc()))
	write("hosts", []byte(e.hosts()))
	return cfg
}

// inetrc points Erlang's resolver (inet_res, which ejabberd asks for SRV
// records) at opts.DNS only: resolv_conf first, so that /etc/resolv.conf
// is not read; localhost comes from its own host line.
func (e *Ejabberd) inetrc() string {
	host, port, err := net.SplitHostPort(e.Opts.DNS)
	if err != nil {
		e.t.Fatalf("testbed: DNS %q: %v", e.Opts.DNS, err)
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		e.t.Fatalf("testbed: DNS %q: not an IPv4 address", e.Opts.DNS)
	}
	// localhost is the host of the node names: the node that runs an
	// ejabberd_ctl command (ejabberdctl) must find it without DNS.
	return fmt.Sprintf("{resolv_conf, \"/dev/null\"}.\n{hosts_file, \"/dev/null\"}.\n{nameserver, {%d,%d,%d,%d}, %s}.\n{lookup, [file, dns]}.\n{host, {127,0,0,1}, [\"localhost\"]}.\n",
		ip[0], ip[1], ip[2], ip[3], port)
}

// hosts is the private /etc/hosts: localhost (the node name's host) and
// opts.Hosts.
func (e *Ejabberd) hosts() string {
	var b strings.Builder
	b.WriteString("# written by xmppedge's e2e test bed, bind-mounted over /etc/hosts in ejabberd's mount namespace\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	names := make([]string, 0, len(e.Opts.Hosts))
	for n := range e.Opts.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s\t%s\n", e.Opts.Hosts[n], n)
	}
	return b.String()
}

func yamlQuote(s string) string { return strconv.Quote(s) }

func (e *Ejabberd) config(certFile string) string {
	o := e.Opts
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# written by xmppedge's e2e test bed")
	w("hosts:")
	w("  - %s", yamlQuote(o.Domain))
	w("loglevel: debug")
	w("log_rotate_count: 0")
	w("certfiles:")
	w("  - %s", yamlQuote(certFile))
	if o.CAFile != "" {
		w("ca_file: %s", yamlQuote(o.CAFile))
	}
	w("listen:")
	w("  - port: 5222")
	w("    ip: %s", yamlQuote(o.IP))
	w("    module: ejabberd_c2s")
	w("    starttls: true")
	w("  - port: 5269")
	w("    ip: %s", yamlQuote(o.IP))
	w("    module: ejabberd_s2s_in")
	if o.DirectTLSPort != 0 {
		w("  - port: %d", o.DirectTLSPort)
		w("    ip: %s", yamlQuote(o.IP))
		w("    module: ejabberd_s2s_in")
		w("    tls: true")
	}
	w("s2s_use_starttls: %s", o.StartTLS)
	w("outgoing_s2s_families:")
	w("  - ipv4")
	w("outgoing_s2s_timeout: 10000")
	w("s2s_dns_timeout: 5")
	w("s2s_dns_retries: 1")
	w("auth_method: internal")
	w("modules:")
	for _, m := range []string{"mod_disco", "mod_ping", "mod_roster", "mod_version"} {
		w("  %s: {}", m)
	}
	if !o.SecureAuth {
		w("  mod_s2s_dialback: {}")
	}
	if o.Extra != "" {
		w("%s", o.Extra)
	}
	return b.String()
}

// erlString quotes s as an Erlang string literal.
func erlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// readyEval is run by erl after `-s ejabberd` returned (ejabberd started):
// it registers the users the way `ejabberdctl register` does
// (ejabberd_admin:register/3) and writes the ready file; a failed
// registration halts the node.
func (e *Ejabberd) readyEval() string {
	users := make([]string, 0, len(e.Opts.Users))
	for u := range e.Opts.Users {
		users = append(users, u)
	}
	sort.Strings(users)
	var regs []string
	for _, u := range users {
		regs = append(regs, fmt.Sprintf("{list_to_binary(%s), list_to_binary(%s), list_to_binary(%s)}", erlString(u), erlString(e.Opts.Domain), erlString(e.Opts.Users[u])))
	}
	return fmt.Sprintf(`Rs = [{U, ejabberd_admin:register(U, H, P)} || {U, H, P} <- [%s]], `+
		`case [R || R = {_, X} <- Rs, element(1, X) =/= ok] of `+
		`[] -> ok = file:write_file(%s, <<"ready">>); `+
		`Bad -> io:format("testbed: register failed: ~p~n", [Bad]), halt(3) end.`,
		strings.Join(regs, ", "), erlString(e.readyFile()))
}

func (e *Ejabberd) readyFile() string { return filepath.Join(e.Dir, "ready") }

// start runs erl with ejabberd in a new mount namespace (unshare), where
// the private hosts file is bind-mounted over /etc/hosts, in its own
// process group; its console goes to console.log. The cleanup stops it
// and keeps the log and config when XMPPEDGE_E2E_KEEP names a folder.
func (e *Ejabberd) start(cfg []byte) {
	e.t.Helper()
	var cookie [12]byte
	_, _ = rand.Read(cookie[:])
	e.cookie = hex.EncodeToString(cookie[:])
	etc := filepath.Join(e.Dir, "etc")
	args := []string{"--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", `mount --bind "$0" /etc/hosts && exec "$@"`, filepath.Join(etc, "hosts"),
		ejabberdErl,
		"-sname", e.Node, "-setcookie", e.cookie,
		// Erlang distribution on loopback and a port of its own: no
		// epmd (as ejabberdctl does with ERL_DIST_PORT).
		"-erl_epmd_port", strconv.Itoa(e.distPort()), "-start_epmd", "false",
		"-kernel", "inet_dist_use_interface", "{127,0,0,1}",
		"+K", "true", "+P", "250000", "-env", "ERL_CRASH_DUMP_BYTES", "0",
		"-mnesia", "dir", erlString(filepath.Join(e.Dir, "spool")),
		"-noinput", "-s", "ejabberd", "-eval", e.readyEval(),
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = e.env()
	e.launch(cmd, e.Dir, func() map[string][]byte {
		base := "ejabberd-" + e.Opts.Domain
		return map[string][]byte{base + ".log": []byte(e.Log()), base + ".yml": cfg}
	}, 80)
}

// env is the environment of the node and of Ctl's, as ejabberdctl
// exports it.
func (e *Ejabberd) env() []string {
	return append(os.Environ(),
		"HOME="+e.Dir,
		"EJABBERD_CONFIG_PATH="+e.Config,
		"EJABBERD_LOG_PATH="+e.LogFile,
		"ERL_LIBS="+ejabberdLibs,
		"ERL_INETRC="+filepath.Join(e.Dir, "etc", "inetrc"),
		"ERL_CRASH_DUMP="+filepath.Join(e.Dir, "logs", "erl_crash.dump"),
		"ERL_MAX_PORTS=32000",
		"ERL_MAX_ETS_TABLES=1400",
	)
}

// distPort is the node's Erlang distribution port, on 127.0.0.1.
func (e *Ejabberd) distPort() int {
	return ejabberdDistBase + int(net.ParseIP(e.Opts.IP).To4()[3])
}

func (e *Ejabberd) distAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.distPort()))
}

// Ctl runs an ejabberdctl command (e.g. "registered_users", DOMAIN) on the
// running node the way Debian's ejabberdctl does with ERL_DIST_PORT set:
// a hidden Erlang node, with the same ERL_INETRC, that runs ejabberd_ctl
// against the node (found at localhost). It returns the command's output
// and an error for a non-zero exit status.
func (e *Ejabberd) Ctl(args ...string) (string, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), ejabberdCtlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ejabberdErl, append([]string{
		"-sname", "ctl_" + hex.EncodeToString(rnd[:]) + "@localhost", "-setcookie", e.cookie,
		"-erl_epmd_port", strconv.Itoa(e.distPort()), "-start_epmd", "false", "-dist_listen", "false",
		"-hidden", "-noinput", "-s", "ejabberd_ctl", "-extra", e.Node}, args...)...)
	cmd.Dir = e.Dir
	cmd.Env = e.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ejabberdctl %s: %v", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// waitReady returns once the ready file exists (users registered) and
// every listener accepts; it fails the test when ejabberd exits or is not
// ready within ejabberdStartTimeout.
func (e *Ejabberd) waitReady() {
	t, opts := e.t, e.Opts
	t.Helper()
	deadline := time.Now().Add(ejabberdStartTimeout)
	check := func(what string, ok func() bool) {
		for !ok() {
			select {
			case <-e.done:
				t.Fatalf("testbed: ejabberd %s exited during start (%v):\n%s", opts.Domain, e.waitErr, e.tail(80))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("testbed: ejabberd %s: %s not ready after %v:\n%s", opts.Domain, what, ejabberdStartTimeout, e.tail(80))
			}
			time.Sleep(ejabberdCheckEvery)
		}
	}
	check("users registered", func() bool { _, err := os.Stat(e.readyFile()); return err == nil })
	for _, addr := range e.ports() {
		check(addr, func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
}

// tail is the last n lines of ejabberd.log, then error.log and the
// console's last lines (crash reports, erl's own errors).
func (e *Ejabberd) tail(n int) string {
	last := lastLines
	b, _ := os.ReadFile(e.LogFile)
	out := last(b, n)
	if el, _ := os.ReadFile(filepath.Join(e.Dir, "logs", "error.log")); len(bytes.TrimSpace(el)) > 0 {
		out = append(append(out, "\n--- error.log ---\n"...), last(el, n)...)
	}
	if c, _ := os.ReadFile(filepath.Join(e.Dir, "console.log")); len(c) > 0 && len(b) == 0 {
		out = append(append(out, "\n--- console ---\n"...), last(c, n)...)
	}
	return string(out)
}

// WaitErrorLog is WaitLog for error.log (crash reports).
func (e *Ejabberd) WaitErrorLog(substr string, timeout time.Duration) error {
	file := filepath.Join(e.Dir, "logs", "error.log")
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(file)
		if strings.Contains(string(b), substr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ejabberd %s: %q not in error.log within %v", e.Opts.Domain, substr, timeout)
		}
	}
}

// C2SAddr is the client listener, IP:5222.
func (e *Ejabberd) C2SAddr() string { return net.JoinHostPort(e.Opts.IP, "5222") }

// S2SAddr is the server listener (STARTTLS), IP:5269.
func (e *Ejabberd) S2SAddr() string { return net.JoinHostPort(e.Opts.IP, "5269") }

// DirectTLSAddr is the direct TLS server listener, IP:DirectTLSPort.
func (e *Ejabberd) DirectTLSAddr() string {
	return net.JoinHostPort(e.Opts.IP, strconv.Itoa(e.Opts.DirectTLSPort))
}
