package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
)

func TestRunFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"no domain", []string{"-count", "1"}, exitSetup, "-to-domain"},
		{"bad mix", []string{"-to-domain", "c.test", "-mix", "1:2"}, exitUsage, "mix"},
		{"bad pid", []string{"-to-domain", "c.test", "-pid", "x"}, exitUsage, "-pid"},
		{"cert without key", []string{"-to-domain", "c.test", "-cert", "a.pem"}, exitUsage, "together"},
		{"missing CA file", []string{"-to-domain", "c.test", "-ca", "/nonexistent/ca.pem"}, exitUsage, "-ca"},
		{"unknown flag", []string{"-frobnicate"}, exitUsage, "frobnicate"},
		{"extra argument", []string{"-to-domain", "c.test", "extra"}, exitUsage, "unexpected"},
		{"help", []string{"-h"}, exitOK, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, want %d; stderr lacks %q:\n%s", code, tt.code, tt.want, stderr.String())
			}
		})
	}
}

// TestRunLoopback runs the command against its own listener (s2s
// receiving mode) and reads its JSON summary.
func TestRunLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-target", addr, "-listen", addr, "-to-domain", "company.test", "-from-domains", "load1.test",
		"-receive", "s2s", "-users", "2", "-streams", "2", "-count", "100", "-mix", "8:1:1", "-quiet"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	var sum struct {
		Sent, Received uint64
		Lost           int64
		Latency        struct{ Count int }
	}
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, stdout.String())
	}
	if sum.Sent != 100 || sum.Received != 100 || sum.Lost != 0 || sum.Latency.Count != 100 {
		t.Errorf("summary %+v", sum)
	}
	if !strings.Contains(stderr.String(), "sent 100, received 100, lost 0") {
		t.Errorf("no closing line on stderr:\n%s", stderr.String())
	}
}
