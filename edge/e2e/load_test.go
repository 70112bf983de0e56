package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
	"github.com/xmppedge/xmppedge/internal/resolve/resolvetest"
)

// The load tests' own addresses (127.0.0.201–229), apart from the rest of
// the suite so that they can run beside it:
//
//	xmppedge-load 127.0.0.205:5269 (load1.test, load2.test: their SRV in the public DNS)
//	    │ s2s, dialback (the gateway verifies our keys at 127.0.0.205) or SASL EXTERNAL
//	    ▼
//	xmppedge outside 127.0.0.203:5269 / :5270 ── inside 127.0.0.202:5269, internal DNS :5300, metrics :9269
//	    │ s2s (dialback with the company Prosody)
//	    ▼
//	company Prosody 127.0.0.201 ──c2s──▶ xmppedge-load, logged in as load0… (the receiving side)
//
//	public DNS 127.0.0.204:5300
//	TestLoad's s2s receiving: a gateway on 127.0.0.210 (inside), .211 (outside) whose inside
//	server is xmppedge-load's listener (127.0.0.205:5269): no Prosody
//	make bench-e2e only: a second gateway path (audit async) on 127.0.0.207 (company Prosody),
//	.208 (inside), .209 (outside); the direct path: xmppedge-load ──s2s──▶ Prosody 127.0.0.206
//	(DNS: the public view) ──c2s──▶ xmppedge-load
const (
	loadPublicDNS = "127.0.0.204:5300"
	loadToolIP    = "127.0.0.205"
	loadDirectIP  = "127.0.0.206"
)

// loadAddrs are one gateway path's addresses.
type loadAddrs struct{ company, inside, outside string }

var (
	loadSyncAddrs  = loadAddrs{company: "127.0.0.201", inside: "127.0.0.202", outside: "127.0.0.203"}
	loadAsyncAddrs = loadAddrs{company: "127.0.0.207", inside: "127.0.0.208", outside: "127.0.0.209"}
	// loadS2SAddrs: the company server is the tool itself.
	loadS2SAddrs = loadAddrs{company: loadToolIP, inside: "127.0.0.210", outside: "127.0.0.211"}
)

// loadBinary is cmd/xmppedge-load, built once per test run (with the race
// detector unless XMPPEDGE_E2E_RACE=0), unless XMPPEDGE_LOAD_BIN names one
// (make bench-e2e: bin/xmppedge-load).
var loadBinary = &goBinary{name: "xmppedge-load", args: raceArgs("../../cmd/xmppedge-load")}

// loadDomains are the tool's fake sending domains.
var loadDomains = []string{"load1.test", "load2.test"}

// loadUsers are the receiving users on the company Prosody: load0 … load(n-1).
func loadUsers(n int) map[string]string {
	u := map[string]string{}
	for i := 0; i < n; i++ {
		u["load"+strconv.Itoa(i)] = Password
	}
	return u
}

// loadConfig is the gateway tests' configuration (gatewayConfig) on a
// load path's addresses, with durability (sync or async), a log level,
// and the per-domain stanza limit and the per-address connection limits
// out of the way (the tool's streams all come from one address).
func loadConfig(a loadAddrs, caFile, durability, level string) string {
	hp := func(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
	cfg := strings.NewReplacer(
		`"`+hp(GatewayIP, S2SPort)+`"`, `"`+hp(a.inside, S2SPort)+`"`,
		`"`+hp(CompanyIP, S2SPort)+`"`, `"`+hp(a.company, S2SPort)+`"`,
		`"`+hp(GatewayOutsideIP, S2SPort)+`"`, `"`+hp(a.outside, S2SPort)+`"`,
		`"`+hp(GatewayOutsideIP, DirectTLSPort)+`"`, `"`+hp(a.outside, DirectTLSPort)+`"`,
		`"`+InsideDNSAddr+`"`, `"`+hp(a.inside, 5300)+`"`,
		`"`+MetricsAddr+`"`, `"`+hp(a.inside, 9269)+`"`,
		`"`+PublicDNSAddr+`"`, `"`+loadPublicDNS+`"`,
		"durability: sync", "durability: "+durability,
		"level: debug", "level: "+level,
		"  connect_timeout: 5s\n", "  connect_timeout: 5s\n  stanza_rate: 1000000\n  stanza_burst: 1000000\n  connections_per_ip: 20000\n  new_connections_per_ip: 10000\n",
	).Replace(gatewayConfig(caFile))
	for _, old := range []string{CompanyIP, GatewayIP, GatewayOutsideIP, PublicDNSAddr} {
		if strings.Contains(cfg, `"`+old+":") || strings.Contains(cfg, `"`+old+`"`) {
			panic("loadConfig: " + old + " is still in the configuration:\n" + cfg)
		}
	}
	return cfg
}

// loadBed is what every load path shares: the CA, the public DNS, the
// tool and its certificate.
type loadBed struct {
	ca      *testCA
	public  *resolvetest.Server
	tool    string
	toolDir string // the listener's certificate and key, the run outputs
}

// loadPath is a gateway between the tool and a company Prosody.
type loadPath struct {
	addrs   loadAddrs
	gw      *gatewayProc
	company *testbed.Prosody
}

// target is the gateway's outside listener.
func (p *loadPath) target() string { return net.JoinHostPort(p.addrs.outside, fmt.Sprint(S2SPort)) }

// startLoadBed starts the public DNS (the load domains at the tool's
// listener) and writes the tool's certificate.
func startLoadBed(t *testing.T) *loadBed {
	t.Helper()
	b := &loadBed{ca: newCA(t), toolDir: t.TempDir(), tool: os.Getenv("XMPPEDGE_LOAD_BIN")}
	if b.tool == "" {
		tool, err := loadBinary.build(t)
		if err != nil {
			t.Fatal(err)
		}
		b.tool = tool
	}
	b.public = startDNSAt(t, loadPublicDNS)
	addServer(b.public, CompanyDomain, loadSyncAddrs.outside, S2SPort)
	for _, d := range loadDomains {
		addServer(b.public, d, loadToolIP, S2SPort)
	}
	// The tool's certificate: for its listener (the gateway verifies the
	// load domains' authoritative server) and for SASL EXTERNAL.
	certPEM, keyPEM, err := b.ca.Issue(certstest.LeafOptions{DNSNames: loadDomains, SRVNames: loadDomains, XmppAddrs: loadDomains})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := certstest.WriteFiles(b.toolDir, "load", certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return b
}

// startGateway starts a gateway on a (audit durability, log level).
func (b *loadBed) startGateway(t *testing.T, a loadAddrs, durability, level string) *gatewayProc {
	t.Helper()
	files := gatewayFiles(t, b.ca, loadDomains...)
	return startGatewayAt(t, loadConfig(a, b.ca.file, durability, level), files, net.JoinHostPort(a.inside, fmt.Sprint(S2SPort)), 20*time.Second)
}

// startPath starts a gateway on a (audit durability, log level) and its
// company Prosody with users receiving users, logging from prosodyLevel
// ("": debug).
func (b *loadBed) startPath(t *testing.T, a loadAddrs, durability, level string, users int, prosodyLevel string) *loadPath {
	t.Helper()
	gw := b.startGateway(t, a, durability, level)
	opts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: a.company, DNS: net.JoinHostPort(a.inside, "5300"), Users: loadUsers(users), LogLevel: prosodyLevel}
	opts.CertPEM, opts.KeyPEM = b.ca.issue(t, CompanyDomain)
	return &loadPath{addrs: a, gw: gw, company: testbed.StartProsody(t, opts)}
}

// loadSummary is the part of xmppedge-load's JSON summary the tests read.
type loadSummary struct {
	Run        string            `json:"run"`
	Streams    int               `json:"streams"`
	Senders    int               `json:"senders"`
	Auth       []string          `json:"auth"`
	Sent       uint64            `json:"sent"`
	SentByKind map[string]uint64 `json:"sent_by_kind"`
	Received   uint64            `json:"received"`
	Lost       int64             `json:"lost"`
	Bounced    uint64            `json:"bounced"`
	Duplicates uint64            `json:"duplicates"`
	Throughput float64           `json:"throughput"`
	SendRate   float64           `json:"send_rate"`
	Seconds    float64           `json:"elapsed_s"`
	Memory     []struct {
		PID       int     `json:"pid"`
		Name      string  `json:"name"`
		Before    int64   `json:"rss_before_kib"`
		After     int64   `json:"rss_after_kib"`
		PerStream float64 `json:"kib_per_stream"`
	} `json:"memory"`
	Latency struct {
		Count int     `json:"count"`
		P50   float64 `json:"p50_ms"`
		P90   float64 `json:"p90_ms"`
		P99   float64 `json:"p99_ms"`
		Max   float64 `json:"max_ms"`
	} `json:"latency"`
	CPU []struct {
		PID         int     `json:"pid"`
		Name        string  `json:"name"`
		Seconds     float64 `json:"cpu_s"`
		PerStanzaUS float64 `json:"us_per_stanza"`
	} `json:"cpu"`
	ToolCPU    float64 `json:"tool_cpu_s"`
	DialbackOK int64   `json:"dialback_verified"`
}

// runLoad runs the tool with args (after the bed's common ones) and
// returns its summary; out names the JSON file in the bed's folder.
func (b *loadBed) runLoad(t *testing.T, out string, args ...string) loadSummary {
	t.Helper()
	jsonFile := filepath.Join(b.toolDir, out+".json")
	all := append([]string{
		"-to-domain", CompanyDomain, "-from-domains", strings.Join(loadDomains, ","),
		"-listen", net.JoinHostPort(loadToolIP, fmt.Sprint(S2SPort)),
		"-listen-cert", filepath.Join(b.toolDir, "load.crt"), "-listen-key", filepath.Join(b.toolDir, "load.key"),
		"-ca", b.ca.file, "-password", Password, "-json", jsonFile,
	}, args...)
	cmd := exec.Command(b.tool, all...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("xmppedge-load %s (%v):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), stderr.String())
	if err != nil {
		t.Fatalf("xmppedge-load: %v", err)
	}
	data, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var s loadSummary
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("the JSON summary does not parse: %v\n%s", err, data)
	}
	return s
}

// TestLoad runs xmppedge-load at a small size through a real gateway to a
// real company Prosody, receiving as c2s users: every stanza arrives, and
// the summary is complete. The figures are not judged (no timing is
// asserted): `make bench-e2e` measures them.
func TestLoad(t *testing.T) {
	testbed.Require(t)
	const users, count = 4, 200
	b := startLoadBed(t)
	p := b.startPath(t, loadSyncAddrs, "sync", "debug", users, "")
	c2s, target, gwPID := p.company.C2SAddr(), p.target(), p.gw.cmd.Process.Pid

	check := func(t *testing.T, s loadSummary, streams int, auth string, gwPID int) {
		t.Helper()
		if s.Sent != count || s.Received != count || s.Lost != 0 || s.Duplicates != 0 || s.Bounced != 0 {
			t.Errorf("sent %d, received %d, lost %d, duplicates %d, bounced %d; want %d each way, none lost", s.Sent, s.Received, s.Lost, s.Duplicates, s.Bounced, count)
		}
		if len(s.Auth) != streams {
			t.Errorf("%d streams authenticated, want %d", len(s.Auth), streams)
		}
		for _, a := range s.Auth {
			if a != auth {
				t.Errorf("a stream authenticated with %q, want %q", a, auth)
			}
		}
		l := s.Latency
		if l.Count != count || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max {
			t.Errorf("latency %+v: want %d ordered, positive percentiles", l, count)
		}
		if s.Throughput <= 0 || s.Seconds <= 0 {
			t.Errorf("throughput %v over %v s", s.Throughput, s.Seconds)
		}
		if len(s.CPU) != 1 || s.CPU[0].PID != gwPID || s.CPU[0].Name != "xmppedge" || s.CPU[0].Seconds < 0 {
			t.Errorf("cpu %+v: want xmppedge's (pid %d)", s.CPU, gwPID)
		}
	}

	t.Run("dialback", func(t *testing.T) {
		s := b.runLoad(t, "dialback", "-target", target, "-receive", "c2s", "-c2s", c2s, "-users", strconv.Itoa(users),
			"-streams", "2", "-count", strconv.Itoa(count), "-mix", "2:1:1", "-senders", "20", "-pid", strconv.Itoa(gwPID))
		check(t, s, 2, "dialback", gwPID)
		if s.Senders != 20 {
			t.Errorf("the summary says %d senders, want 20", s.Senders)
		}
		if s.DialbackOK < 2 {
			t.Errorf("the listener verified %d dialback keys for the gateway, want one per stream at least", s.DialbackOK)
		}
		for _, k := range []string{"message", "presence", "iq"} {
			if s.SentByKind[k] == 0 {
				t.Errorf("no %s sent: %v", k, s.SentByKind)
			}
		}
	})
	t.Run("sasl external at a rate", func(t *testing.T) {
		s := b.runLoad(t, "external", "-target", target, "-receive", "c2s", "-c2s", c2s, "-users", strconv.Itoa(users),
			"-auth", "external", "-cert", filepath.Join(b.toolDir, "load.crt"), "-key", filepath.Join(b.toolDir, "load.key"),
			"-streams", "1", "-count", strconv.Itoa(count), "-rate", "400", "-pid", strconv.Itoa(gwPID))
		check(t, s, 1, "sasl_external", gwPID)
	})
	// Idle streams: the tool holds them open after the warm-up and
	// reports the gateway's memory growth (make bench-e2e: 10,000).
	t.Run("idle streams", func(t *testing.T) {
		const streams = 50
		s := b.runLoad(t, "idle", "-target", target, "-receive", "c2s", "-c2s", c2s, "-users", "1",
			"-auth", "external", "-cert", filepath.Join(b.toolDir, "load.crt"), "-key", filepath.Join(b.toolDir, "load.key"),
			"-streams", strconv.Itoa(streams), "-hold", "500ms", "-pid", strconv.Itoa(gwPID))
		if len(s.Auth) != streams || s.Sent != 0 {
			t.Errorf("%d streams authenticated, %d stanzas sent after the warm-up; want %d and none", len(s.Auth), s.Sent, streams)
		}
		if len(s.Memory) != 1 || s.Memory[0].PID != gwPID || s.Memory[0].Name != "xmppedge" || s.Memory[0].Before <= 0 || s.Memory[0].After <= 0 {
			t.Errorf("memory %+v: want xmppedge's (pid %d) resident sizes", s.Memory, gwPID)
		}
	})
	// The tool on both sides of a gateway: its listener is the company
	// server the gateway relays to (xmppedge alone, no Prosody).
	t.Run("s2s receiving", func(t *testing.T) {
		gw := b.startGateway(t, loadS2SAddrs, "sync", "debug")
		s := b.runLoad(t, "s2s", "-target", net.JoinHostPort(loadS2SAddrs.outside, fmt.Sprint(S2SPort)), "-receive", "s2s", "-users", strconv.Itoa(users),
			"-streams", "2", "-count", strconv.Itoa(count), "-mix", "1:1:1", "-pid", strconv.Itoa(gw.cmd.Process.Pid))
		check(t, s, 2, "dialback", gw.cmd.Process.Pid)
	})
}
