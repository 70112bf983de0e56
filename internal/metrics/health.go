package metrics

import (
	"net/http"
	"strings"
)

// Mux returns a ServeMux serving /metrics, /healthz and /readyz. ready
// lists what keeps the gateway from serving (e.g. "audit: folder
// /var/lib/xmppedge/audit is not writable"); nil means always ready. The
// admin API, when enabled, registers on the same mux.
func (m *Metrics) Mux(ready func() []string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		var problems []string
		if ready != nil {
			problems = ready()
		}
		if len(problems) == 0 {
			writeText(w, http.StatusOK, "ready\n")
			return
		}
		var b strings.Builder
		for _, p := range problems {
			// One problem per line, whatever the problem's text holds.
			b.WriteString(strings.ReplaceAll(strings.ReplaceAll(p, "\r", " "), "\n", " "))
			b.WriteByte('\n')
		}
		writeText(w, http.StatusServiceUnavailable, b.String())
	})
	return mux
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
