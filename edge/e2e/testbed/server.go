package testbed

import (
	"bytes"
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
)

// server is what the test bed's XMPP servers (Prosody, ejabberd) share: a
// process in its own process group, stopped with SIGTERM to the group and
// SIGKILL after a bound, whose console goes to console.log, and whose
// own log the tests wait on.
type server struct {
	LogFile string // the server's own log (debug level)

	kind     string // "Prosody" | "ejabberd", for messages
	t        testing.TB
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	waitErr  error
	stopOnce sync.Once
	stopWait time.Duration      // how long SIGTERM has before SIGKILL
	tailOf   func(n int) string // the last lines of the logs, for errors
	domain   string
}

func newServer(t testing.TB, kind, domain string, stopWait time.Duration) server {
	return server{kind: kind, t: t, domain: domain, done: make(chan struct{}), stopWait: stopWait}
}

// launch starts cmd in its own process group (killed with the test
// process), its output to dir/console.log, and registers the cleanup:
// stop, keep the logs (XMPPEDGE_E2E_KEEP: keep[name] = contents), and
// print the tail when the test failed.
func (s *server) launch(cmd *exec.Cmd, dir string, keep func() map[string][]byte, tailLines int) {
	t := s.t
	t.Helper()
	console, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = console, console
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		console.Close()
		t.Fatalf("testbed: start %s %s: %v", s.kind, s.domain, err)
	}
	go func() {
		s.waitErr = cmd.Wait()
		console.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Stop()
		if dir := os.Getenv("XMPPEDGE_E2E_KEEP"); dir != "" {
			_ = os.MkdirAll(dir, 0o755)
			for name, data := range keep() {
				_ = os.WriteFile(filepath.Join(dir, sanitize(t.Name())+"-"+name), data, 0o644)
			}
		}
		if t.Failed() || os.Getenv("XMPPEDGE_E2E_VERBOSE") != "" {
			t.Logf("testbed: %s %s log tail:\n%s", s.kind, s.domain, s.tailOf(tailLines))
		}
	})
}

// Stop stops the server: SIGTERM to its process group, then SIGKILL if it
// has not exited within a bound. It is idempotent and also run by
// t.Cleanup.
func (s *server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(s.stopWait):
			s.t.Logf("testbed: %s %s did not stop within %v of SIGTERM: SIGKILL", s.kind, s.domain, s.stopWait)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.done
		}
	})
}

// Exited reports whether the process has exited.
func (s *server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Log returns the server's log so far.
func (s *server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// WaitLog waits until the log contains substr, or fails after timeout
// with an error that quotes the log's tail.
func (s *server) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(s.Log(), substr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s: %q not logged within %v; log tail:\n%s", s.kind, s.domain, substr, timeout, s.tailOf(30))
		}
		if s.Exited() {
			return errors.New(s.kind + " " + s.domain + " has exited; log tail:\n" + s.tailOf(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CountLog returns how many times substr occurs in the log so far.
func (s *server) CountLog(substr string) int { return strings.Count(s.Log(), substr) }

// checkPortsFree fails the test when one of addrs is taken (a server of
// an earlier run left running?).
func (s *server) checkPortsFree(addrs []string) {
	s.t.Helper()
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			s.t.Fatalf("testbed: %s is not free for %s %s: %v (one left running? see ss -ltnp)", addr, s.kind, s.domain, err)
		}
		l.Close()
	}
}

// lastLines is the last n lines of b.
func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
