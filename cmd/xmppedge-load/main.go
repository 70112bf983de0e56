// Command xmppedge-load puts a measured load on an XMPP server — an
// xmppedge gateway or any server — over server-to-server streams, and
// receives it back to time it on one clock.
//
//	xmppedge-load -target HOST:PORT -to-domain company.test -from-domains load1.test,load2.test \
//	  -listen 127.0.0.205:5269 -receive c2s -c2s 127.0.0.201:5222 -users 4 -password PW \
//	  -streams 4 -count 20000 -rate 0 -size 400 -mix 8:1:1 -pid 1234
//
// It opens -streams s2s streams as the -from-domains (in turn) to
// -to-domain at -target (or its SRV targets), authenticated by dialback —
// the target verifies our keys at -listen, where the fake domains' SRV
// records must point — or by SASL EXTERNAL with -cert/-key. The stanzas
// come back either to client users of the receiving server (-receive c2s:
// the tool logs in as -user-prefix0 … with -password over -c2s) or to the
// tool's own listener as the receiving server (-receive s2s). Each stanza
// carries its send time and sequence number in its id.
//
// It prints a progress line a second on stderr and a JSON summary on
// stdout (or -json FILE): sent, received, lost, throughput, latency
// p50/p90/p99/max, and with -pid the CPU time of those processes per
// received stanza. It exits 1 when the run could not be set up, 3 when
// stanzas were lost.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xmppedge/xmppedge/internal/loadgen"
)

// Exit codes.
const (
	exitOK    = 0
	exitSetup = 1 // bad flags or a run that could not start
	exitUsage = 2
	exitLost  = 3 // the run finished with stanzas lost
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// list is a comma-separated flag value.
func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xmppedge-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       loadgen.Config
		dns       = fs.String("dns", "", "DNS servers for the SRV lookup of -to-domain when -target is empty (IP[:PORT],...; default: the system's)")
		from      = fs.String("from-domains", "load1.test", "the fake sending domains, comma-separated (the streams take them in turn)")
		certFile  = fs.String("cert", "", "client certificate for -auth external (PEM; also the listener's unless -listen-cert)")
		keyFile   = fs.String("key", "", "its key")
		lcertFile = fs.String("listen-cert", "", "the listener's certificate (PEM; default: -cert, else self-signed for its domains)")
		lkeyFile  = fs.String("listen-key", "", "its key")
		caFile    = fs.String("ca", "", "PEM roots that verify the target's (and the c2s server's) certificate; default: not verified")
		noTLS     = fs.Bool("no-tls", false, "do not use STARTTLS (dialback only; c2s then needs a server allowing PLAIN in clear)")
		mix       = fs.String("mix", "1:0:0", "stanza kinds as message:presence:iq weights, or one of message, presence, iq")
		pids      = fs.String("pid", "", "process ids whose CPU time per received stanza is reported, comma-separated")
		jsonFile  = fs.String("json", "", "write the JSON summary to FILE instead of stdout")
		quiet     = fs.Bool("quiet", false, "no progress lines")
		verbose   = fs.Bool("v", false, "log the streams' events (debug) on stderr")
		allowLoss = fs.Bool("allow-loss", false, "exit 0 even when stanzas were lost")
		count     = fs.Uint64("count", 0, "stanzas to send (0: as many as -duration allows)")
	)
	fs.StringVar(&cfg.Target, "target", "", "HOST:PORT the streams connect to (default: the SRV targets of -to-domain)")
	fs.StringVar(&cfg.ToDomain, "to-domain", "", "the receiving domain (required)")
	fs.IntVar(&cfg.Streams, "streams", 1, "s2s streams to open")
	fs.StringVar(&cfg.Auth, "auth", loadgen.AuthDialback, "how the streams authenticate: dialback or external (SASL EXTERNAL with -cert)")
	fs.StringVar(&cfg.Secret, "secret", "", "dialback secret (default: a random one per run)")
	fs.StringVar(&cfg.Listen, "listen", "", "HOST:PORT of the tool's s2s listener: the fake domains' authoritative server (dialback) and, with -receive s2s, the receiving server")
	fs.StringVar(&cfg.Receive, "receive", loadgen.ReceiveC2S, "where the stanzas come back: c2s (client users of -to-domain at -c2s) or s2s (the listener)")
	fs.StringVar(&cfg.C2S, "c2s", "", "HOST:PORT of the receiving server's client listener (-receive c2s)")
	fs.IntVar(&cfg.Users, "users", 1, "receiving users: -user-prefix0 … (c2s: logged in; s2s: addressed)")
	fs.StringVar(&cfg.UserPrefix, "user-prefix", "load", "receiving users' local part before their number")
	fs.StringVar(&cfg.Password, "password", "", "the receiving users' password (c2s)")
	fs.StringVar(&cfg.Resource, "resource", "load", "the receiving users' resource (c2s)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "send for this long (with -count: whichever ends first)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "stanzas per second over all streams (0: as fast as the target takes them)")
	fs.IntVar(&cfg.Batch, "batch", 16, "at most this many stanzas per write (at a rate, fewer: those due)")
	fs.IntVar(&cfg.Senders, "senders", 0, "distinct sending users per fake domain (load0 …; 0: one, load): -senders × -users distinct JID pairs, new keys for the gateway's policy cache")
	fs.IntVar(&cfg.Size, "size", 400, "stanza size in bytes (padded body, status or query)")
	fs.DurationVar(&cfg.Hold, "hold", 0, "after the warm-up, keep the streams open and idle this long, then report the memory growth per stream of the -pid processes (alone: send nothing more)")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "wait this long at most for the last stanzas after sending")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "bound on each connection, login and the warm-up")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: xmppedge-load -to-domain DOMAIN [-target HOST:PORT] [-from-domains D,...] [-listen HOST:PORT] [-receive c2s -c2s HOST:PORT -users N -password PW | -receive s2s] [-count N | -duration D | -hold D -pid P] [flags]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xmppedge-load: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Count = *count
	cfg.DNS = list(*dns)
	cfg.FromDomains = list(*from)
	cfg.TLS = !*noTLS
	if !*quiet {
		cfg.Progress = stderr
	}
	if err := settings(&cfg, *mix, *pids, *certFile, *keyFile, *lcertFile, *lkeyFile, *caFile); err != nil {
		fmt.Fprintf(stderr, "xmppedge-load: %v\n", err)
		return exitUsage
	}

	sum, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge-load: %v\n", err)
		return exitSetup
	}
	out, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge-load: %v\n", err)
		return exitSetup
	}
	out = append(out, '\n')
	if *jsonFile != "" {
		err = os.WriteFile(*jsonFile, out, 0o644)
	} else {
		_, err = stdout.Write(out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "xmppedge-load: %v\n", err)
		return exitSetup
	}
	fmt.Fprintf(stderr, "sent %d, received %d, lost %d (bounced %d); %.0f stanzas/s; latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		sum.Sent, sum.Received, sum.Lost, sum.Bounced, sum.Throughput, sum.Latency.P50, sum.Latency.P90, sum.Latency.P99, sum.Latency.Max)
	for _, m := range sum.Memory {
		fmt.Fprintf(stderr, "process %d (%s): resident memory %d → %d KiB, %.1f KiB per idle stream\n", m.PID, m.Name, m.Before, m.After, m.PerStream)
	}
	for _, c := range sum.CPU {
		fmt.Fprintf(stderr, "process %d (%s): %.3f s CPU, %.1f µs per received stanza\n", c.PID, c.Name, c.Seconds, c.PerStanzaUS)
	}
	if sum.Lost != 0 && !*allowLoss {
		return exitLost
	}
	return exitOK
}

// settings reads the flags that need parsing or files.
func settings(cfg *loadgen.Config, mix, pids, certFile, keyFile, lcertFile, lkeyFile, caFile string) error {
	m, err := loadgen.ParseMix(mix)
	if err != nil {
		return err
	}
	cfg.Mix = m
	for _, p := range list(pids) {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return fmt.Errorf("-pid %q: not a process id", p)
		}
		cfg.PIDs = append(cfg.PIDs, n)
	}
	if (certFile == "") != (keyFile == "") || (lcertFile == "") != (lkeyFile == "") {
		return errors.New("give a certificate and its key together")
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("-cert: %w", err)
		}
		cfg.ClientCert, cfg.ListenCert = &c, &c
	}
	if lcertFile != "" {
		c, err := tls.LoadX509KeyPair(lcertFile, lkeyFile)
		if err != nil {
			return fmt.Errorf("-listen-cert: %w", err)
		}
		cfg.ListenCert = &c
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-ca %s: no PEM certificate", caFile)
		}
	}
	return nil
}
