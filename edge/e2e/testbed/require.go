package testbed

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Python is the interpreter that runs the client driver: Debian's, which has
// python3-slixmpp (a python3 found first on PATH may not).
const Python = "/usr/bin/python3"

// AptInstall is the command that installs the test bed's prerequisites.
const AptInstall = "apt-get install -y prosody lua-unbound python3-slixmpp"

var (
	requireOnce sync.Once
	requireErr  string
)

// Require fails the test (t.Fatalf, naming the apt-get command to run) when
// prosody, prosodyctl, lua-unbound or python3-slixmpp are missing. With
// XMPPEDGE_E2E=skip in the environment it skips the test instead.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv("XMPPEDGE_E2E") == "skip" {
		t.Skip("XMPPEDGE_E2E=skip: end-to-end tests skipped")
	}
	requireOnce.Do(func() {
		for _, bin := range []string{"prosody", "prosodyctl"} {
			if _, err := exec.LookPath(bin); err != nil {
				requireErr = bin + " not found"
				return
			}
		}
		// Without lua-unbound Prosody falls back to its own resolver, which
		// reads /etc/resolv.conf and cannot be pointed at the test DNS.
		if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "lua-unbound").CombinedOutput(); err != nil || !strings.Contains(string(out), "ok installed") {
			requireErr = "lua-unbound not installed"
			return
		}
		if out, err := exec.Command(Python, "-c", "import slixmpp").CombinedOutput(); err != nil {
			requireErr = Python + " cannot import slixmpp: " + string(out)
			return
		}
	})
	if requireErr != "" {
		t.Fatalf("end-to-end prerequisites missing (%s). Install them with:\n\t%s\nor set XMPPEDGE_E2E=skip to skip these tests", requireErr, AptInstall)
	}
}
