package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/audit/jsaudit"
	"github.com/xmppedge/xmppedge/internal/resolve/resolvetest"
)

// The cluster test bed: three xmppedge nodes, each embedding one NATS
// server (client port 4222, route port 6222 on its own address). edge1 is
// the gateway of the other tests (its listeners, its inside DNS responder,
// its metrics address); edge2 and edge3 listen on addresses of their own.
var clusterNATSIP = [3]string{"127.0.0.41", "127.0.0.42", "127.0.0.43"}

// clusterNodeIP is where edge2 and edge3 listen (inside :5269, outside
// :5279 and :5280, metrics :9269); edge1 uses the gateway addresses.
var clusterNodeIP = [3]string{"", "127.0.0.44", "127.0.0.45"}

// clusterInsideDNS is the company's internal DNS view in the cluster test
// (a DNS server of the test's own, not a node's responder: it must
// outlive any node): partner.test at the three inside listeners, in
// failover order.
const clusterInsideDNS = "127.0.0.46:5300"

func clusterNodeName(i int) string { return fmt.Sprintf("edge%d", i+1) }

// clusterOutsideAddr is node i's outside (STARTTLS) listener.
func clusterOutsideAddr(i int) (string, uint16) {
	if i == 0 {
		return GatewayOutsideIP, S2SPort
	}
	return clusterNodeIP[i], 5279
}

// clusterDNS points both DNS views at all three nodes: the partner's
// view (public) lists company.test's three outside listeners with equal
// priority, as docs/cluster.md says to; the company's view lists
// partner.test at the three inside listeners with priorities 10, 20, 30
// (edge1 first, then the others in turn).
func clusterDNS(t *testing.T, public *resolvetest.Server) {
	public.Remove("_xmpp-server._tcp." + CompanyDomain)
	for i := range clusterNATSIP {
		host, port := clusterOutsideAddr(i)
		target := fmt.Sprintf("%s.%s", clusterNodeName(i), CompanyDomain)
		public.AddSRV("_xmpp-server._tcp."+CompanyDomain, target, port, 10, 10)
		public.AddA(target, host)
	}
	inside := startDNSAt(t, clusterInsideDNS)
	for i := range clusterNATSIP {
		host, port, _ := net.SplitHostPort(clusterInsideAddr(i))
		target := fmt.Sprintf("%s.%s", clusterNodeName(i), PartnerDomain)
		p, _ := strconv.Atoi(port)
		inside.AddSRV("_xmpp-server._tcp."+PartnerDomain, target, uint16(p), uint16(10*(i+1)), 10)
		inside.AddA(target, host)
	}
}

// clusterProsodies starts the company Prosody (resolving through the
// test's internal view) and the partner Prosody, both with XEP-0198 on
// their s2s streams (mod_smacks): a stanza a node has not acknowledged
// is held by the sending server, and bounced if the node dies. The inside
// leg runs TLS with certificates both ways: Prosody 0.12 enables stream
// management only on a stream whose features come after authentication,
// which SASL EXTERNAL gives and dialback does not.
func clusterProsodies(t *testing.T, ca *testCA, public *resolvetest.Server) {
	// Prosody keeps only the last smacks_max_queue_size (500) unacknowledged
	// stanzas and drops older ones unbounced: hold the whole burst.
	const holdAll = "smacks_max_queue_size = 5000"
	company := testbed.ProsodyOptions{Domain: CompanyDomain, IP: CompanyIP, DNS: clusterInsideDNS, Users: Users, Modules: []string{"smacks"},
		CAFile: ca.file, SecureAuth: true, RequireEncryption: true, Extra: holdAll}
	company.CertPEM, company.KeyPEM = ca.issue(t, CompanyDomain)
	testbed.StartProsody(t, company)
	testbed.StartProsody(t, testbed.ProsodyOptions{Domain: PartnerDomain, IP: PartnerIP, DNS: public.Addr(), Users: Users, RequireEncryption: true, Modules: []string{"smacks"}, Extra: holdAll})
}

// clusterMetricsAddr is node i's metrics and admin listener.
func clusterMetricsAddr(i int) string {
	if i == 0 {
		return MetricsAddr
	}
	return clusterNodeIP[i] + ":9269"
}

// clusterInsideAddr is node i's inside listener.
func clusterInsideAddr(i int) string {
	if i == 0 {
		return fmt.Sprintf("%s:%d", GatewayIP, S2SPort)
	}
	return clusterNodeIP[i] + ":5269"
}

// clusterConfig is node i's configuration: the gateway config of the other
// tests (edge2 and edge3 moved to their own addresses, without the inside
// DNS responder), the cluster section, and the audit in the cluster's
// stream.
func clusterConfig(caFile string, i int) string {
	cfg := withInsideTLS(gatewayConfig(caFile))
	if i > 0 {
		ip := clusterNodeIP[i]
		cfg = strings.Replace(cfg, fmt.Sprintf("listen: [\"%s:%d\"]", GatewayIP, S2SPort), fmt.Sprintf("listen: [\"%s:5269\"]", ip), 1)
		cfg = strings.Replace(cfg, fmt.Sprintf("listen: [\"%s:%d\"]", GatewayOutsideIP, S2SPort), fmt.Sprintf("listen: [\"%s:5279\"]", ip), 1)
		cfg = strings.Replace(cfg, fmt.Sprintf("listen_tls: [\"%s:%d\"]", GatewayOutsideIP, DirectTLSPort), fmt.Sprintf("listen_tls: [\"%s:5280\"]", ip), 1)
		cfg = strings.Replace(cfg, fmt.Sprintf("  dns_listen: \"%s\"\n", InsideDNSAddr), "", 1)
		cfg = strings.Replace(cfg, fmt.Sprintf("listen: \"%s\"", MetricsAddr), fmt.Sprintf("listen: \"%s\"", clusterMetricsAddr(i)), 1)
	}
	cfg = strings.Replace(cfg, "audit:\n  path: audit/audit.jsonl\n", "audit:\n  backend: jetstream\n  retention: 720h\n", 1)
	return cfg + clusterSection(clusterNodeName(i), clusterNATSIP[:], i)
}

// clusterSection is the cluster section of node i (named node) of a
// cluster whose nodes embed NATS servers on natsIPs (client port 4222,
// routes on 6222), three replicas.
func clusterSection(node string, natsIPs []string, i int) string {
	var routes []string
	for j, ip := range natsIPs {
		if j != i {
			routes = append(routes, fmt.Sprintf("\"nats://%s:6222\"", ip))
		}
	}
	return fmt.Sprintf(`cluster:
  node: %s
  nats:
    embedded:
      listen: "%s:4222"
      cluster_listen: "%s:6222"
      routes: [%s]
      store_dir: nats
  replicas: 3
`, node, natsIPs[i], natsIPs[i], strings.Join(routes, ", "))
}

// clusterJetStream connects to the NATS server on ip (closed with the
// test).
func clusterJetStream(t *testing.T, ip string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("nats://" + ip + ":4222")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// clusterAdmin calls node i's admin API.
func clusterAdmin(t *testing.T, i int, method, path string) (int, string) {
	t.Helper()
	code, body, err := clusterHTTP(i, method, path)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, clusterNodeName(i), err)
	}
	return code, body
}

func clusterHTTP(i int, method, path string) (int, string, error) {
	req, err := http.NewRequest(method, "http://"+clusterMetricsAddr(i)+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// waitReady polls node i's /readyz until it answers want (bounded; the
// metrics listener opens after the s2s listeners).
func waitReady(t *testing.T, i int, want int) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body, err := clusterHTTP(i, http.MethodGet, "/readyz")
		if err == nil && code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s /readyz: %d %q, want %d", clusterNodeName(i), code, body, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCluster runs three xmppedge nodes that share one JetStream (each
// embedding a NATS server) between a real company Prosody and a real
// partner Prosody; the traffic goes through edge1:
//
//   - every node is ready; a message each way is relayed and its records
//     are in the cluster's stream, read through edge3's NATS server and
//     verified there and after an export;
//   - the admin API of edge3 lists edge1's sessions and closes one of them;
//   - with edge2 killed (SIGKILL) traffic flows on; with edge3 killed too
//     the stream has no quorum: edge1's /readyz says so and a message is
//     bounced to its sender, not relayed unrecorded; with edge3 back the
//     traffic resumes.
func TestCluster(t *testing.T) {
	testbed.Require(t)
	top := t
	public := publicDNS(t, false)
	ca := newCA(t)
	files := gatewayFiles(t, ca, PartnerDomain)
	// Every node answers dialback verifications for the others' keys.
	files["dialback.secret"] = []byte("the cluster's one dialback secret\n")
	// One internal CA for the inside leg, shared by the nodes likewise:
	// the company server trusts it once. (The test CA, which the company
	// server trusts already.)
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	files["inside-ca.crt"] = ca.CertPEM
	files["inside-ca.key"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	var nodes [3]*gatewayProc
	var dirs [3]string
	for i := range nodes {
		dirs[i] = t.TempDir()
		nodes[i] = launchGateway(t, dirs[i], clusterConfig(ca.file, i), files)
	}
	for i, g := range nodes {
		g.waitListening(clusterInsideAddr(i), 90*time.Second)
	}
	for i := range nodes {
		waitReady(t, i, http.StatusOK)
	}
	clusterDNS(t, public)
	clusterProsodies(t, ca, public)
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, CompanyIP+":5222")
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, PartnerIP+":5222")
	messageBothWays(t, alice, bob)

	t.Run("audit in the stream", func(t *testing.T) {
		clusterAuditVerified(t, ca)
		// The operator's way: xmppedge audit verify -config on another node.
		out, err := exec.Command(gatewayBinary(t), "audit", "verify", "-config", filepath.Join(dirs[2], "xmppedge.yaml")).CombinedOutput()
		if err != nil {
			t.Fatalf("xmppedge audit verify -config (edge3): %v\n%s", err, out)
		}
		t.Logf("xmppedge audit verify -config on edge3:\n%s", strings.TrimSpace(string(out)))
	})
	t.Run("admin of edge3 closes a session of edge1", func(t *testing.T) { clusterAdminCloses(t) })
	var victim int
	t.Run("burst while the relaying node dies", func(t *testing.T) {
		victim = clusterRelayingNode(t)
		survivor := (victim + 1) % 3
		clusterBurstKill(t, alice, bob, nodes[victim], clusterNodeName(victim), survivor)
		// On a surviving node, and on the export: every chain verifies.
		cfg := filepath.Join(dirs[survivor], "xmppedge.yaml")
		for _, args := range [][]string{{"audit", "verify", "-config", cfg}, {"audit", "export", "-config", cfg, "-o", t.TempDir()}} {
			out, err := exec.Command(gatewayBinary(t), args...).CombinedOutput()
			if err != nil {
				t.Fatalf("xmppedge %s after the kill: %v\n%s", strings.Join(args[:2], " "), err, out)
			}
			t.Logf("xmppedge %s on %s after the kill:\n%s", strings.Join(args[:2], " "), clusterNodeName(survivor), strings.TrimSpace(string(out)))
		}
	})
	t.Run("quorum", func(t *testing.T) {
		// One node is down (the burst killed it). The audit stream's
		// leader may have been its server: wait for the election
		// (seconds; longer on a loaded machine) before judging the
		// traffic.
		if !nodes[victim].stopped {
			nodes[victim].kill()
		}
		watch, other := (victim+1)%3, (victim+2)%3
		waitStreamLeader(t, clusterNATSIP[watch], clusterNodeName(victim))
		send := func(id string) Event {
			t.Helper()
			if err := alice.SendMessageID(bob.JID, "through the cluster "+id, id); err != nil {
				t.Fatal(err)
			}
			ev, err := waitEither(alice, bob, id, 60*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			return ev
		}
		sendUntil := func(prefix, kind, cond string) {
			t.Helper()
			deadline := time.Now().Add(60 * time.Second)
			for n := 0; ; n++ {
				// The sender's server may still hold a stream of the
				// state before: a message after it gets the new answer.
				ev := send(fmt.Sprintf("%s-%d", prefix, n))
				if ev.Kind == kind && ev.Error == cond {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: want %s %s, the last answer was %+v", prefix, kind, cond, ev)
				}
				time.Sleep(time.Second)
			}
		}
		sendUntil("one-down", "message", "")
		nodes[other].kill()
		body := waitReady(t, watch, http.StatusServiceUnavailable)
		if !strings.Contains(body, "cluster") && !strings.Contains(body, "audit") {
			t.Errorf("/readyz without quorum does not name the cluster or the audit: %q", body)
		}
		if ev := send("two-down"); ev.Kind != "message_error" || ev.Error != "internal-server-error" {
			t.Fatalf("without quorum the message was not bounced with internal-server-error: %+v", ev)
		}
		// Started for the rest of the test, not this subtest.
		nodes[other] = runGatewayAt(top, dirs[other], clusterConfig(ca.file, other), files, clusterInsideAddr(other), 90*time.Second)
		waitReady(t, watch, http.StatusOK)
		sendUntil("back", "message", "")
	})
	t.Run("a reload on one node cuts the partner on every node", func(t *testing.T) {
		clusterReloadCuts(t, alice, bob, nodes, dirs, (victim+1)%3, (victim+2)%3)
	})
}

// clusterReloadCuts removes partner.test from the partner list of the two
// live nodes and reloads only other (SIGHUP): other tells the cluster, and
// watch, which holds the company server's stream and the stream to
// partner.test, reloads its own files and cuts them; a message to bob is
// then refused.
func clusterReloadCuts(t *testing.T, alice, bob *testbed.Client, nodes [3]*gatewayProc, dirs [3]string, watch, other int) {
	waitReady(t, other, http.StatusOK) // restarted by the quorum subtest
	before := len(nodes[watch].records("reloaded"))
	if err := os.WriteFile(filepath.Join(dirs[watch], "partners.yaml"), partnersYAML("other.test"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes[other].setPartners(t, "other.test")
	deadline := time.Now().Add(30 * time.Second)
	for len(nodes[watch].records("reloaded")) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reload after %s's reload", clusterNodeName(watch), clusterNodeName(other))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := nodes[watch].waitRecord("session no longer allowed by the policy: closing", nil, 30*time.Second); err != nil {
		t.Fatalf("%s cut nothing: %v", clusterNodeName(watch), err)
	}
	var sessions []struct {
		Node      string   `json:"node"`
		ID        string   `json:"id"`
		Leg       string   `json:"leg"`
		Direction string   `json:"direction"`
		Local     []string `json:"local"`
		Remote    []string `json:"remote"`
	}
	// Every stream with the partner, and the company server's streams
	// towards it; the stream that delivers to the company server stays (it
	// carries the bounces to our users).
	for {
		code, body := clusterAdmin(t, watch, http.MethodGet, "/admin/sessions")
		if code != http.StatusOK {
			t.Fatalf("GET /admin/sessions: %d %s", code, body)
		}
		sessions = sessions[:0]
		if err := json.Unmarshal([]byte(body), &sessions); err != nil {
			t.Fatal(err)
		}
		left := 0
		for _, s := range sessions {
			if s.Node == clusterNodeName(watch) && !(s.Leg == "inside" && s.Direction == "outgoing") &&
				(slices.Contains(s.Remote, PartnerDomain) || slices.Contains(s.Local, PartnerDomain)) {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has %d session(s) with %s: %s", clusterNodeName(watch), left, PartnerDomain, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := alice.SendMessageID(bob.JID, "after the reload", "after-reload"); err != nil {
		t.Fatal(err)
	}
	ev, err := waitEither(alice, bob, "after-reload", 60*time.Second)
	if err != nil || ev.Kind != "message_error" {
		t.Fatalf("a message to %s after its removal: %+v %v, want it refused", PartnerDomain, ev, err)
	}
	t.Logf("SIGHUP on %s: %s reloaded and cut its sessions with %s; a message to bob was refused (%s)", clusterNodeName(other), clusterNodeName(watch), PartnerDomain, ev.Error)
}

// clusterRelayingNode is the node the company server's stream goes to
// (as the cluster-wide session list of edge3 says): the one a burst must
// lose.
func clusterRelayingNode(t *testing.T) int {
	var sessions []struct {
		Node      string `json:"node"`
		Leg       string `json:"leg"`
		Direction string `json:"direction"`
	}
	code, body := clusterAdmin(t, 2, http.MethodGet, "/admin/sessions")
	if code != http.StatusOK {
		t.Fatalf("GET /admin/sessions on edge3: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &sessions); err != nil {
		t.Fatalf("sessions on edge3: %v\n%s", err, body)
	}
	for _, s := range sessions {
		if s.Leg == "inside" && s.Direction == "incoming" {
			for i := range clusterNATSIP {
				if clusterNodeName(i) == s.Node {
					t.Logf("the company server's stream is on %s", s.Node)
					return i
				}
			}
		}
	}
	t.Fatalf("no node holds a stream from the company server: %s", body)
	return 0
}

// waitEither waits for the message id at bob's, or its bounce at alice's.
func waitEither(alice, bob *testbed.Client, id string, wait time.Duration) (Event, error) {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if ev, err := bob.WaitEvent(200*time.Millisecond, func(e Event) bool { return e.ID == id && e.Kind == "message" }); err == nil {
			return ev, nil
		}
		if ev, err := alice.WaitEvent(200*time.Millisecond, func(e Event) bool { return e.ID == id && e.Kind == "message_error" }); err == nil {
			return ev, nil
		}
	}
	return Event{}, fmt.Errorf("neither delivered nor bounced within %v", wait)
}

// clusterAuditVerified reads the audit stream through edge3's NATS server:
// the chains hold the relayed messages, and the export verifies with the
// file verifier.
func clusterAuditVerified(t *testing.T, ca *testCA) {
	js := clusterJetStream(t, clusterNATSIP[2])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, err := jsaudit.Export(ctx, js, jsaudit.DefaultStream, dir)
		if err != nil {
			t.Fatalf("export through edge3: %v", err)
		}
		var stanzas []string
		for _, f := range files {
			if err := audit.ReadRecords([]string{f}, func(r *audit.Record, _ []byte) error {
				if r.Event == audit.EventStanza && (r.ID == "m1" || r.ID == "m2") {
					stanzas = append(stanzas, r.Node+":"+r.ID)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if len(stanzas) >= 2 {
			for _, f := range files {
				res, err := audit.Verify([]string{f}, nil)
				if err != nil || !res.OK {
					t.Fatalf("the export of %s does not verify: %+v %v", filepath.Base(f), res, err)
				}
			}
			t.Logf("audit: %d node chain(s) exported through edge3 and verified; recorded %v", len(files), stanzas)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the records of m1 and m2 are not in the stream (found %v)", stanzas)
		}
		time.Sleep(500 * time.Millisecond)
		os.RemoveAll(dir)
		dir = t.TempDir()
	}
}

// clusterAdminCloses lists the cluster's sessions on edge3 and closes one
// of edge1's there.
func clusterAdminCloses(t *testing.T) {
	var sessions []struct {
		Node string `json:"node"`
		ID   string `json:"id"`
		Leg  string `json:"leg"`
	}
	deadline := time.Now().Add(30 * time.Second)
	var target string
	for target == "" {
		code, body := clusterAdmin(t, 2, http.MethodGet, "/admin/sessions")
		if code != http.StatusOK {
			t.Fatalf("GET /admin/sessions on edge3: %d %s", code, body)
		}
		sessions = sessions[:0]
		if err := json.Unmarshal([]byte(body), &sessions); err != nil {
			t.Fatalf("sessions on edge3: %v\n%s", err, body)
		}
		for _, s := range sessions {
			if s.Node == "edge1" && strings.HasPrefix(s.ID, "edge1-") && s.Leg == "outside" {
				target = s.ID
			}
		}
		if target == "" && time.Now().After(deadline) {
			t.Fatalf("edge3 lists no outside session of edge1: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, body := clusterAdmin(t, 2, http.MethodPost, "/admin/sessions/"+target+"/close")
	if code != http.StatusOK {
		t.Fatalf("closing %s on edge3: %d %s", target, code, body)
	}
	t.Logf("edge3 closed edge1's session %s", target)
}

// waitStreamLeader waits (bounded) until the audit stream has a leader
// other than gone, asking the NATS server at ip.
func waitStreamLeader(t *testing.T, ip, gone string) {
	t.Helper()
	js := clusterJetStream(t, ip)
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := js.Stream(ctx, jsaudit.DefaultStream)
		var leader string
		if err == nil {
			if info, err := st.Info(ctx); err == nil && info.Cluster != nil {
				leader = info.Cluster.Leader
			}
		}
		cancel()
		if leader != "" && leader != gone {
			t.Logf("audit stream leader: %s", leader)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit stream has no leader besides %s (last error: %v)", gone, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// clusterBurstKill sends a burst of 1,000 messages from alice to bob and
// kills the node relaying them (SIGKILL) in the middle of it. Both
// Prosody servers run XEP-0198 on s2s, and the gateway acknowledges a
// stanza only once it is written on (or bounced): the company server
// bounces what the dead node had not acknowledged, and sends the rest
// through the next node its SRV records name. So every message is
// delivered or bounced to its sender (none silently lost), and every
// delivered one has exactly one record in the stream, in whichever
// node's chain. A message both delivered and bounced is one the node
// wrote on but died before acknowledging: counted, not an error.
func clusterBurstKill(t *testing.T, alice, bob *testbed.Client, victim *gatewayProc, victimName string, survivor int) {
	const n = 1000
	id := func(i int) string { return fmt.Sprintf("b%04d", i) }
	go func() {
		for i := 0; i < n; i++ {
			if alice.SendMessageID(bob.JID, fmt.Sprintf("burst %04d", i), id(i)) != nil {
				return
			}
		}
	}()
	countBurst := func() (delivered, bounced map[string]bool) {
		delivered, bounced = map[string]bool{}, map[string]bool{}
		for _, m := range bob.Messages() {
			if strings.HasPrefix(m.ID, "b") {
				delivered[m.ID] = true
			}
		}
		for _, e := range alice.Events() {
			if e.Kind == "message_error" && strings.HasPrefix(e.ID, "b") {
				bounced[e.ID] = true
			}
		}
		return delivered, bounced
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		d, _ := countBurst()
		if len(d) >= n/4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d burst messages arrived", len(d), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	victim.kill()
	killedAt, _ := countBurst()
	var delivered, bounced map[string]bool
	for {
		delivered, bounced = countBurst()
		done := 0
		for i := 0; i < n; i++ {
			if delivered[id(i)] || bounced[id(i)] {
				done++
			}
		}
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			var lost []string
			for i := 0; i < n; i++ {
				if !delivered[id(i)] && !bounced[id(i)] {
					lost = append(lost, id(i))
				}
			}
			t.Fatalf("%d of %d burst messages neither delivered nor bounced, e.g. %v", len(lost), n, lost[:min(5, len(lost))])
		}
		time.Sleep(50 * time.Millisecond)
	}
	records := map[string]int{}
	for i := range clusterNATSIP {
		for mid, c := range clusterStanzaRecords(t, clusterNATSIP[survivor], clusterNodeName(i), "b") {
			records[mid] += c
		}
	}
	both := 0
	for mid := range delivered {
		if records[mid] != 1 {
			t.Errorf("delivered message %s has %d allow records in the stream, want 1", mid, records[mid])
		}
		if bounced[mid] {
			both++
		}
	}
	t.Logf("burst: %d delivered, %d bounced of %d (%d of them delivered and bounced: written on, not yet acknowledged); %s killed after %d had arrived",
		len(delivered), len(bounced), n, both, victimName, len(killedAt))
}

// clusterStanzaRecords counts node's allowed stanza records by stanza id
// (those with the prefix), read from the stream through the NATS server
// at ip.
func clusterStanzaRecords(t *testing.T, ip, node, prefix string) map[string]int {
	t.Helper()
	js := clusterJetStream(t, ip)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := map[string]int{}
	err := jsaudit.ReadChain(ctx, js, jsaudit.DefaultStream, node, func(r *audit.Record, _ []byte) error {
		if r.Event == audit.EventStanza && r.Decision == audit.DecisionAllow && strings.HasPrefix(r.ID, prefix) {
			out[r.ID]++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s's chain through %s: %v", node, ip, err)
	}
	return out
}
