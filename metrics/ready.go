package metrics

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// /readyz: 200 while the process should get traffic, else 503, with the
// state of every upstream's last probe, so that an operator sees which
// upstream is down. Text by default; JSON for ?format=json or a client
// that accepts application/json.

// readyState is the body of /readyz in JSON.
type readyState struct {
	Ready     bool            `json:"ready"`
	Reason    string          `json:"reason,omitempty"` // why not ready
	Upstreams []upstreamState `json:"upstreams"`
}

type upstreamState struct {
	Name  string `json:"name"`
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
}

func (m *Metrics) readyState() readyState {
	st := readyState{Ready: true, Upstreams: []upstreamState{}}
	if err := m.checkReady(); err != nil {
		st.Ready, st.Reason = false, err.Error()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(m.probes)) {
		u := upstreamState{Name: name, Up: m.probes[name] == nil}
		if !u.Up {
			u.Error = m.probes[name].Error()
		}
		st.Upstreams = append(st.Upstreams, u)
	}
	return st
}

func (m *Metrics) serveReady(w http.ResponseWriter, r *http.Request) {
	st := m.readyState()
	w.Header().Set("Cache-Control", "no-store")
	code := http.StatusOK
	if !st.Ready {
		code = http.StatusServiceUnavailable
	}
	if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(st)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	if st.Ready {
		fmt.Fprintln(w, "ready")
	} else {
		fmt.Fprintln(w, "not ready:", st.Reason)
	}
	for _, u := range st.Upstreams {
		if u.Up {
			fmt.Fprintf(w, "upstream %s: up\n", u.Name)
		} else {
			fmt.Fprintf(w, "upstream %s: down: %s\n", u.Name, u.Error)
		}
	}
}
