package admin

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Source is what the API administers: in practice the running gateway.
type Source interface {
	// SessionsJSON returns the current sessions as a value encoding/json can
	// marshal; a []Session is the expected shape.
	SessionsJSON() any
	// CloseSession closes the session with the id and reports whether there
	// was one.
	CloseSession(id string) bool
	// Reload re-reads the configuration, policy and certificates and applies
	// them without dropping established sessions. On error the running
	// configuration is kept; the error may join several problems
	// (errors.Join), each reported on its own line.
	Reload() error
}

// Session is the JSON shape of one session expected from
// Source.SessionsJSON.
type Session struct {
	ID         string    `json:"id"`
	Leg        string    `json:"leg"`       // inside | outside
	Direction  string    `json:"direction"` // incoming (peer connected to us) | outgoing
	Local      []string  `json:"local"`     // our domain(s) on the stream
	Remote     []string  `json:"remote"`    // the authenticated peer domain(s)
	RemoteAddr string    `json:"remote_addr"`
	TLSVersion string    `json:"tls_version,omitempty"` // empty when not encrypted
	Auth       string    `json:"auth,omitempty"`        // sasl_external | dialback
	PeerCert   string    `json:"peer_certificate,omitempty"`
	StanzasIn  uint64    `json:"stanzas_in"`
	StanzasOut uint64    `json:"stanzas_out"`
	BytesIn    uint64    `json:"bytes_in"`
	BytesOut   uint64    `json:"bytes_out"`
	Started    time.Time `json:"started"`
	AgeSeconds float64   `json:"age_seconds"`
}

// Funcs adapts plain functions to a Source. A nil function makes its
// endpoint answer 501 Not Implemented.
type Funcs struct {
	Sessions func() any
	Close    func(id string) bool
	ReloadFn func() error
}

// SessionsJSON calls f.Sessions.
func (f Funcs) SessionsJSON() any { return f.Sessions() }

// CloseSession calls f.Close.
func (f Funcs) CloseSession(id string) bool { return f.Close(id) }

// Reload calls f.ReloadFn.
func (f Funcs) Reload() error { return f.ReloadFn() }

// implemented reports whether the Funcs behind src (if any) provide the
// endpoint's function.
func implemented(src Source, endpoint string) bool {
	f, ok := src.(Funcs)
	if !ok {
		return true
	}
	switch endpoint {
	case "sessions":
		return f.Sessions != nil
	case "close":
		return f.Close != nil
	default:
		return f.ReloadFn != nil
	}
}

// Register adds the admin endpoints to mux. Actions are not logged; see
// RegisterLogged.
func Register(mux *http.ServeMux, src Source) {
	RegisterLogged(mux, src, nil)
}

// RegisterLogged adds the admin endpoints to mux and logs every action
// (session closed, reload and its outcome) to log (nil: not logged).
func RegisterLogged(mux *http.ServeMux, src Source, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	csrf := http.NewCrossOriginProtection()

	mux.HandleFunc("GET /admin/sessions", func(w http.ResponseWriter, r *http.Request) {
		if !implemented(src, "sessions") {
			writeText(w, http.StatusNotImplemented, "listing sessions is not available\n")
			return
		}
		body, err := json.MarshalIndent(src.SessionsJSON(), "", "  ")
		if err != nil {
			log.Error("admin: encoding the sessions failed", "err", err)
			writeText(w, http.StatusInternalServerError, "encoding the sessions failed: "+err.Error()+"\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(body, '\n'))
	})

	mux.Handle("POST /admin/sessions/{id}/close", csrf.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !implemented(src, "close") {
			writeText(w, http.StatusNotImplemented, "closing sessions is not available\n")
			return
		}
		id := r.PathValue("id")
		if !src.CloseSession(id) {
			writeText(w, http.StatusNotFound, "no session with id "+oneLine(id)+" (list them with GET /admin/sessions)\n")
			return
		}
		log.Info("admin: session closed", "session", id, "remote_addr", r.RemoteAddr)
		writeText(w, http.StatusOK, "closed\n")
	})))

	mux.Handle("POST /reload", csrf.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !implemented(src, "reload") {
			writeText(w, http.StatusNotImplemented, "reload is not available\n")
			return
		}
		err := src.Reload()
		if err != nil {
			log.Warn("admin: reload rejected, the running configuration is kept", "err", err, "remote_addr", r.RemoteAddr)
			writeText(w, http.StatusInternalServerError, errorLines(err))
			return
		}
		log.Info("admin: reloaded", "remote_addr", r.RemoteAddr)
		writeText(w, http.StatusOK, "reloaded\n")
	})))
}

// errorLines returns err's message one problem per line: errors.Join (and
// config.FieldErrors) already put each problem on its own line.
func errorLines(err error) string {
	var b strings.Builder
	for line := range strings.Lines(err.Error()) {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	if b.Len() == 0 {
		return "reload failed\n"
	}
	return b.String()
}

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(s)
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
