package loadgen

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// freeAddr returns a loopback address nothing listens on (now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestRunLoopback runs the whole tool against its own listener: the
// sending streams connect to it as the receiving domain's server (s2s
// receiving mode), so every part but the c2s client is exercised in
// process. No timing is asserted.
func TestRunLoopback(t *testing.T) {
	cert, err := selfSigned([]string{"load1.test", "load2.test"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		cfg      Config
		wantAuth string
	}{
		{"dialback over TLS, as fast as possible", Config{Auth: AuthDialback, TLS: true, Streams: 3, Count: 500, Mix: Mix{2, 1, 1}}, "dialback"},
		{"dialback in clear, at a rate", Config{Auth: AuthDialback, Streams: 2, Count: 60, Rate: 300, Mix: Mix{1, 0, 0}}, "dialback"},
		{"SASL EXTERNAL", Config{Auth: AuthExternal, ClientCert: cert, Streams: 2, Count: 100, Mix: Mix{0, 0, 1}}, "sasl_external"},
		{"by duration", Config{Auth: AuthDialback, TLS: true, Streams: 1, Duration: 300 * time.Millisecond, Rate: 200, Mix: Mix{1, 0, 0}}, "dialback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := freeAddr(t)
			cfg := tt.cfg
			cfg.Target, cfg.Listen = addr, addr
			cfg.ToDomain, cfg.FromDomains = "company.test", []string{"load1.test", "load2.test"}
			cfg.Receive, cfg.Users, cfg.UserPrefix = ReceiveS2S, 3, "u"
			cfg.Size, cfg.Batch, cfg.Timeout, cfg.Drain = 300, 8, 5*time.Second, 5*time.Second
			var progress bytes.Buffer
			cfg.Progress = &progress
			sum, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Sent == 0 || sum.Received != sum.Sent || sum.Lost != 0 || sum.Duplicates != 0 || sum.Bounced != 0 {
				t.Errorf("sent %d, received %d, lost %d, duplicates %d, bounced %d", sum.Sent, sum.Received, sum.Lost, sum.Duplicates, sum.Bounced)
			}
			if cfg.Count > 0 && sum.Sent != cfg.Count {
				t.Errorf("sent %d, want %d", sum.Sent, cfg.Count)
			}
			var byKind uint64
			for _, n := range sum.SentByKind {
				byKind += n
			}
			if byKind != sum.Sent {
				t.Errorf("sent by kind %v does not add up to %d", sum.SentByKind, sum.Sent)
			}
			for k, w := range cfg.Mix {
				if w == 0 && sum.SentByKind[Kind(k).String()] != 0 {
					t.Errorf("sent %d %s with weight 0", sum.SentByKind[Kind(k).String()], Kind(k))
				}
			}
			if sum.Latency.Count != int(sum.Received) || sum.Latency.P50 > sum.Latency.P99 || sum.Latency.P99 > sum.Latency.Max {
				t.Errorf("latency %+v", sum.Latency)
			}
			if len(sum.Auth) != cfg.Streams {
				t.Errorf("auth %v, want %d streams", sum.Auth, cfg.Streams)
			}
			for _, a := range sum.Auth {
				if a != tt.wantAuth {
					t.Errorf("a stream authenticated with %q, want %q", a, tt.wantAuth)
				}
			}
			if !strings.Contains(progress.String(), "sent ") {
				t.Errorf("no progress line: %q", progress.String())
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	good := func() Config {
		return Config{ToDomain: "company.test", FromDomains: []string{"load1.test"}, Streams: 1, Auth: AuthDialback,
			Listen: "127.0.0.1:1", Receive: ReceiveS2S, Users: 1, Count: 1}
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // in the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no to-domain", func(c *Config) { c.ToDomain = "" }, "-to-domain"},
		{"no from-domains", func(c *Config) { c.FromDomains = nil }, "-from-domains"},
		{"no streams", func(c *Config) { c.Streams = 0 }, "-streams"},
		{"dialback without a listener", func(c *Config) { c.Listen = ""; c.Receive = ReceiveC2S; c.C2S = "x:1" }, "dialback needs -listen"},
		{"external without a certificate", func(c *Config) { c.Auth = AuthExternal }, "-cert"},
		{"unknown auth", func(c *Config) { c.Auth = "plain" }, "-auth"},
		{"c2s without an address", func(c *Config) { c.Receive = ReceiveC2S }, "-c2s"},
		{"unknown receive", func(c *Config) { c.Receive = "smtp" }, "-receive"},
		{"no users", func(c *Config) { c.Users = 0 }, "-users"},
		{"no bound", func(c *Config) { c.Count = 0 }, "-count, -duration or -hold"},
		{"hold alone", func(c *Config) { c.Count, c.Hold, c.PIDs = 0, time.Second, []int{1} }, ""},
		{"hold without a pid", func(c *Config) { c.Hold = time.Second }, "give their -pid"},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "-rate"},
		{"negative senders", func(c *Config) { c.Senders = -1 }, "-senders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			err := c.check()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("check: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("check: %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestPlanSender(t *testing.T) {
	tests := []struct {
		senders, seq uint64
		want         string
	}{
		{0, 7, "load@load1.test/3"},
		{1, 7, "load0@load1.test/3"},
		{2500, 7, "load7@load1.test/3"},
		{2500, 2507, "load7@load1.test/3"},
		{2500, 2499, "load2499@load1.test/3"},
	}
	for _, tt := range tests {
		p := plan{senders: tt.senders}
		if got := string(p.sender(nil, "load1.test", 3, tt.seq)); got != tt.want {
			t.Errorf("senders %d, seq %d: %q, want %q", tt.senders, tt.seq, got, tt.want)
		}
	}
}
