package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// benchEnvInt is an integer setting of the end-to-end benchmark.
func benchEnvInt(t *testing.T, name string, dflt int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return dflt
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// benchPath is one way from the tool to the c2s receivers, and what was
// measured on it.
type benchPath struct {
	name, label    string
	target, c2s    string
	pids           []int
	fast, one      []loadSummary // per round
	gwCPU, proCPU  []float64     // µs per stanza, fast runs
	throughput     []float64
	p50, p99       []float64 // one at a time
	lost, bounced  int64     // over every run
	gatewayPresent bool
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestBenchE2E is `make bench-e2e`: xmppedge-load against real Prosody,
// directly and through xmppedge with the audit log sync and async (two
// gateways, each with its own company Prosody, on the load tests'
// addresses: load_test.go). In each of XMPPEDGE_BENCH_ROUNDS rounds
// (default 3) it runs the tool on each path in turn, twice: as fast as
// the path takes the stanzas (XMPPEDGE_BENCH_COUNT of 400 bytes, default
// 20000, over XMPPEDGE_BENCH_STREAMS streams, default 4, to 4 c2s users),
// for throughput and CPU per stanza; and one stanza at a time (300 at
// 100/s on one stream), for latency. It prints the medians over the
// rounds as a table; with XMPPEDGE_BENCH_OUT, it also writes the table
// (table.md) and every run's JSON summary there.
//
// It runs only with XMPPEDGE_BENCH_E2E=1 and asserts no figure, nor
// that no stanza was lost: the table counts the lost ones (an overloaded
// gateway fails closed, and bounces), the log says which run lost them.
func TestBenchE2E(t *testing.T) {
	if os.Getenv("XMPPEDGE_BENCH_E2E") != "1" {
		t.Skip("the end-to-end benchmark: run `make bench-e2e` (or set XMPPEDGE_BENCH_E2E=1)")
	}
	testbed.Require(t)
	count := benchEnvInt(t, "XMPPEDGE_BENCH_COUNT", 20000)
	streams := benchEnvInt(t, "XMPPEDGE_BENCH_STREAMS", 4)
	rounds := benchEnvInt(t, "XMPPEDGE_BENCH_ROUNDS", 3)
	const users = 4
	out := os.Getenv("XMPPEDGE_BENCH_OUT")
	if out != "" {
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// Prosody logs from warn (the test bed's debug log would be much of
	// its work per stanza), xmppedge from info.
	b := startLoadBed(t)
	syncPath := b.startPath(t, loadSyncAddrs, "sync", "info", users, "warn")
	asyncPath := b.startPath(t, loadAsyncAddrs, "async", "info", users, "warn")
	directOpts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: loadDirectIP, DNS: loadPublicDNS, Users: loadUsers(users), LogLevel: "warn"}
	directOpts.CertPEM, directOpts.KeyPEM = b.ca.issue(t, CompanyDomain)
	direct := testbed.StartProsody(t, directOpts)

	paths := []*benchPath{
		{name: "direct", label: "direct: xmppedge-load → Prosody", target: direct.S2SAddr(), c2s: direct.C2SAddr(), pids: []int{direct.PID()}},
		{name: "sync", label: "through xmppedge, audit sync", target: syncPath.target(), c2s: syncPath.company.C2SAddr(),
			pids: []int{syncPath.gw.cmd.Process.Pid, syncPath.company.PID()}, gatewayPresent: true},
		{name: "async", label: "through xmppedge, audit async", target: asyncPath.target(), c2s: asyncPath.company.C2SAddr(),
			pids: []int{asyncPath.gw.cmd.Process.Pid, asyncPath.company.PID()}, gatewayPresent: true},
	}
	save := func(name string) {
		if out == "" {
			return
		}
		if data, err := os.ReadFile(filepath.Join(b.toolDir, name+".json")); err == nil {
			_ = os.WriteFile(filepath.Join(out, name+".json"), data, 0o644)
		}
	}
	for round := 1; round <= rounds; round++ {
		for _, p := range paths {
			pids := make([]string, len(p.pids))
			for i, pid := range p.pids {
				pids[i] = strconv.Itoa(pid)
			}
			common := []string{"-target", p.target, "-receive", "c2s", "-c2s", p.c2s, "-pid", strings.Join(pids, ","), "-timeout", "20s", "-drain", "30s", "-allow-loss"}
			name := fmt.Sprintf("%s-fast-%d", p.name, round)
			fast := b.runLoad(t, name, append(common, "-users", strconv.Itoa(users), "-streams", strconv.Itoa(streams), "-count", strconv.Itoa(count), "-rate", "0")...)
			save(name)
			name = fmt.Sprintf("%s-one-%d", p.name, round)
			one := b.runLoad(t, name, append(common, "-users", "1", "-streams", "1", "-count", "300", "-rate", "100")...)
			save(name)
			for _, s := range []loadSummary{fast, one} {
				p.lost += s.Lost
				p.bounced += int64(s.Bounced)
				if s.Lost != 0 {
					t.Logf("%s, round %d: %d stanzas lost (%d bounced)", p.label, round, s.Lost, s.Bounced)
				}
			}
			p.throughput = append(p.throughput, fast.Throughput)
			p.p50, p.p99 = append(p.p50, one.Latency.P50), append(p.p99, one.Latency.P99)
			for _, c := range fast.CPU {
				if c.Name == "xmppedge" {
					p.gwCPU = append(p.gwCPU, c.PerStanzaUS)
				} else {
					p.proCPU = append(p.proCPU, c.PerStanzaUS)
				}
			}
		}
	}

	// Distinct JID pairs: the same fast run on the sync path from one
	// sending user and from 2,500 per domain (to 4 users: 10,000 pairs,
	// each a new key of the policy's decision cache), back to back.
	var pairs [2][]float64 // gateway CPU µs per stanza: one pair per user, 10,000 pairs
	var pairsRate [2][]float64
	for round := 1; round <= rounds; round++ {
		for i, senders := range []string{"0", "2500"} {
			name := fmt.Sprintf("sync-senders%s-%d", senders, round)
			s := b.runLoad(t, name, "-target", syncPath.target(), "-receive", "c2s", "-c2s", syncPath.company.C2SAddr(),
				"-pid", strconv.Itoa(syncPath.gw.cmd.Process.Pid), "-timeout", "20s", "-drain", "30s", "-allow-loss",
				"-users", strconv.Itoa(users), "-streams", strconv.Itoa(streams), "-count", strconv.Itoa(count), "-rate", "0", "-senders", senders)
			save(name)
			pairsRate[i] = append(pairsRate[i], s.Throughput)
			for _, c := range s.CPU {
				pairs[i] = append(pairs[i], c.PerStanzaUS)
			}
		}
	}

	var tb strings.Builder
	fmt.Fprintf(&tb, "machine: %d CPUs (%s), %s; medians of %d rounds; throughput: %d stanzas of 400 bytes over %d streams to 4 c2s users, as fast as possible; one at a time: 300 stanzas at 100/s on one stream\n\n",
		runtime.NumCPU(), cpuModel(), time.Now().UTC().Format("2006-01-02"), rounds, count, streams)
	tb.WriteString("| path | stanzas/s | vs direct | xmppedge CPU µs/stanza | Prosody CPU µs/stanza | one at a time p50 / p99 ms | added p50 ms | lost (bounced) |\n")
	tb.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	base := paths[0]
	for _, p := range paths {
		gw := "—"
		if p.gatewayPresent {
			gw = fmt.Sprintf("%.1f", median(p.gwCPU))
		}
		fmt.Fprintf(&tb, "| %s | %.0f | %.2f | %s | %.1f | %.2f / %.2f | %+.2f | %d (%d) |\n", p.label, median(p.throughput), median(p.throughput)/median(base.throughput),
			gw, median(p.proCPU), median(p.p50), median(p.p99), median(p.p50)-median(base.p50), p.lost, p.bounced)
	}
	fmt.Fprintf(&tb, "\nthrough xmppedge (audit sync), distinct JID pairs: %d (one sender) %.0f stanzas/s, %.1f µs xmppedge CPU per stanza; 10,000 (2,500 senders × %d users) %.0f stanzas/s, %.1f µs\n",
		users, median(pairsRate[0]), median(pairs[0]), users, median(pairsRate[1]), median(pairs[1]))
	tb.WriteString("\nper round (stanzas/s):")
	for _, p := range paths {
		fmt.Fprintf(&tb, " %s %v;", p.name, p.throughput)
	}
	tb.WriteString("\n")
	fmt.Fprintln(os.Stdout)
	fmt.Fprint(os.Stdout, tb.String())
	if out != "" {
		if err := os.WriteFile(filepath.Join(out, "table.md"), []byte(tb.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown model"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown model"
}

// TestBenchIdle measures what an idle s2s stream costs in resident
// memory: xmppedge-load opens XMPPEDGE_BENCH_IDLE streams (default
// 10,000; SASL EXTERNAL, one TLS stream each) to a gateway in front of a
// company Prosody, sends one message on each (the warm-up), holds them
// idle for 10 seconds and reports the gateway's RSS growth per stream.
// Like TestBenchE2E it runs only with XMPPEDGE_BENCH_E2E=1 (make
// bench-e2e) and asserts no figure.
func TestBenchIdle(t *testing.T) {
	if os.Getenv("XMPPEDGE_BENCH_E2E") != "1" {
		t.Skip("the end-to-end benchmark: run `make bench-e2e` (or set XMPPEDGE_BENCH_E2E=1)")
	}
	testbed.Require(t)
	idle := benchEnvInt(t, "XMPPEDGE_BENCH_IDLE", 10000)
	b := startLoadBed(t)
	p := b.startPath(t, loadSyncAddrs, "sync", "warn", 1, "warn")
	gwPID := p.gw.cmd.Process.Pid
	s := b.runLoad(t, "idle", "-target", p.target(), "-receive", "c2s", "-c2s", p.company.C2SAddr(), "-users", "1",
		"-auth", "external", "-cert", filepath.Join(b.toolDir, "load.crt"), "-key", filepath.Join(b.toolDir, "load.key"),
		"-streams", strconv.Itoa(idle), "-hold", "10s", "-timeout", "120s", "-pid", strconv.Itoa(gwPID), "-quiet")
	for _, m := range s.Memory {
		fmt.Printf("\nidle streams: %d open through xmppedge (SASL EXTERNAL, TLS 1.3); %s RSS %d → %d KiB: %.1f KiB per idle stream\n",
			len(s.Auth), m.Name, m.Before, m.After, m.PerStream)
	}
	if out := os.Getenv("XMPPEDGE_BENCH_OUT"); out != "" {
		if data, err := os.ReadFile(filepath.Join(b.toolDir, "idle.json")); err == nil {
			_ = os.WriteFile(filepath.Join(out, "idle.json"), data, 0o644)
		}
	}
}
