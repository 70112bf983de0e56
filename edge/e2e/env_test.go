package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/resolve/resolvetest"
)

// Addresses and names shared by every end-to-end test. Each server has its
// own loopback address; tests in this package do not run in parallel.
const (
	DNSAddr = "127.0.0.53:5300" // the test DNS server (UDP and TCP)
	// PublicDNSAddr is for a second DNS view, when the tests need the
	// company's internal view (partner.test -> the gateway's inside
	// listener) and the Internet's view (company.test -> the gateway's
	// outside listener) to differ.
	PublicDNSAddr = "127.0.0.54:5300"

	CompanyDomain = "company.test"
	CompanyIP     = "127.0.0.2"
	PartnerDomain = "partner.test"
	PartnerIP     = "127.0.0.3"
	GatewayIP     = "127.0.0.4" // xmppedge, in the gateway tests
	DownDomain    = "down.test" // SRV points at DownIP, where nothing listens
	DownIP        = "127.0.0.9"
	BrokenDomain  = "broken.test" // SRV points at BrokenIP, where a listener answers every stream with a stream error
	BrokenIP      = "127.0.0.10"

	S2SPort  = 5269
	Password = "secret-pw"
)

// Users registered on every Prosody of the tests.
var Users = map[string]string{"alice": Password, "bob": Password}

// startDNS starts the test DNS server on DNSAddr, closed by t.Cleanup.
func startDNS(t testing.TB) *resolvetest.Server { return startDNSAt(t, DNSAddr) }

// startDNSAt starts a test DNS server on addr, closed by t.Cleanup.
func startDNSAt(t testing.TB, addr string) *resolvetest.Server {
	t.Helper()
	// The previous test's server on the same address may still be letting
	// go of it (a loaded machine): wait for it, within a bound.
	deadline := time.Now().Add(10 * time.Second)
	dns, err := resolvetest.Start(addr)
	for err != nil && errors.Is(err, syscall.EADDRINUSE) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		dns, err = resolvetest.Start(addr)
	}
	if err != nil {
		t.Fatalf("test DNS on %s: %v", addr, err)
	}
	t.Cleanup(func() { dns.Close() })
	return dns
}

// addServer publishes _xmpp-server._tcp.domain -> xmpp.domain:port and
// xmpp.domain -> ip.
func addServer(dns *resolvetest.Server, domain, ip string, port uint16) {
	target := "xmpp." + domain
	dns.AddSRV("_xmpp-server._tcp."+domain, target, port, 10, 10)
	dns.AddA(target, ip)
}

// step logs how long a step took.
func step(t testing.TB, name string, start time.Time) {
	t.Helper()
	t.Logf("%-50s %8.1f ms", name, float64(time.Since(start).Microseconds())/1000)
}

// startStreamErrorServer listens on addr and answers every s2s stream with
// its own header, then <stream:error><COND/></stream:error>, then closes:
// a server that is up but refuses to federate. Closed by t.Cleanup.
func startStreamErrorServer(t testing.TB, addr, domain, cond string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("stream-error server on %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 4096)
				var got []byte
				for !strings.Contains(string(got), "<stream:stream") || !strings.Contains(string(got), ">") {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					got = append(got, buf[:n]...)
				}
				fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' id='e2e-%d' from='%s' version='1.0'>"+
					"<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>", time.Now().UnixNano(), domain, cond)
				_, _ = c.Read(buf) // let the peer close first
			}()
		}
	}()
}

// goBinary is a Go program built once per test run into a temporary
// folder, which TestMain removes at the end.
type goBinary struct {
	name string   // file name of the binary
	args []string // go build flags and the package
	once sync.Once
	path string
	err  error
}

var (
	buildDirsMu sync.Mutex
	buildDirs   []string
)

func (b *goBinary) build(t testing.TB) (string, error) {
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "xmppedge-e2e-"+b.name)
		if err != nil {
			b.err = err
			return
		}
		buildDirsMu.Lock()
		buildDirs = append(buildDirs, dir)
		buildDirsMu.Unlock()
		b.path = filepath.Join(dir, b.name)
		start := time.Now()
		args := append([]string{"build", "-o", b.path}, b.args...)
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		t.Logf("built %s (go build %s) in %v", b.name, strings.Join(b.args, " "), time.Since(start).Round(time.Millisecond))
	})
	return b.path, b.err
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range buildDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}
