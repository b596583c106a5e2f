// Package metrics instruments popbridge with Prometheus collectors and
// serves them over HTTP with the health endpoints:
//
//	/metrics  Prometheus text exposition
//	/healthz  200 while the process runs (liveness)
//	/readyz   200 while it should get traffic (readiness), else 503
//
// No metric carries a user name or a client address as a label: label
// values come from small fixed sets (results, command names) and from the
// configured listen addresses.
package metrics

import (
	"errors"
	"maps"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
)

// Namespace prefixes every metric name.
const Namespace = "popbridge"

// POP3 command results and their label values, pre-created so that rates
// and alerts see zeros instead of missing series.
var (
	pop3Commands = []string{"CAPA", "QUIT", "NOOP", "USER", "PASS", "AUTH", "STAT", "LIST", "UIDL",
		"RETR", "TOP", "DELE", "RSET", "APOP", "STLS", "LAST", "UNKNOWN"}
	commandResults = []string{"ok", "err", "aborted"}
	loginResults   = []pop3front.LoginResult{pop3front.LoginOK, pop3front.LoginAuthFailed,
		pop3front.LoginUpstreamError, pop3front.LoginRefusedPlaintext, pop3front.LoginRateLimited, pop3front.LoginInUse}
	imapCommands = []string{"LOGIN", "AUTHENTICATE", "SELECT", "UID FETCH", "UID STORE", "UID EXPUNGE",
		"UID MOVE", "UID COPY", "LIST", "NOOP", "LOGOUT"}
)

// Metrics holds popbridge's collectors in a private registry, so that
// several instances (tests) never share state.
type Metrics struct {
	reg *prometheus.Registry

	connsOpen        *prometheus.GaugeVec
	connsTotal       *prometheus.CounterVec
	connsRefused     *prometheus.CounterVec
	logins           *prometheus.CounterVec
	commands         *prometheus.CounterVec
	retrOK           atomic.Pointer[prometheus.Counter] // commands{RETR,ok}, once counted
	sentBytes        prometheus.Counter
	retrieved        prometheus.Counter
	deleted          prometheus.Counter
	truncated        prometheus.Counter
	sessionDuration  prometheus.Histogram
	upstreamCommand  *prometheus.HistogramVec
	upstreamConnect  *prometheus.HistogramVec
	upstreamConnErrs *prometheus.CounterVec
	probeUp          *prometheus.GaugeVec
	probeLastOK      *prometheus.GaugeVec
	certExpiry       *prometheus.GaugeVec
	draining         prometheus.Gauge
	reloads          *prometheus.CounterVec
	reloadLastOK     prometheus.Gauge
	tokenRequests    *prometheus.CounterVec
	tokenDuration    prometheus.Histogram
	hook             *hookMetrics  // authhttp.go
	cache            *cacheMetrics // snapcache.go

	mu     sync.Mutex
	ready  func() error
	probes map[string]error // the last probe of each upstream, for /readyz
}

// New creates the collectors, registered with a new registry together with
// the Go runtime and process collectors. version is exported as the
// version label of popbridge_build_info.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), probes: make(map[string]error)}
	f := factory{m.reg}
	m.connsOpen = f.gaugeVec("pop3", "open_connections", "POP3 connections open now, by listener.", "listener")
	m.connsTotal = f.counterVec("pop3", "connections_total",
		"POP3 connections accepted and served, by listener and whether TLS protected them from the start.", "listener", "tls")
	m.connsRefused = f.counterVec("pop3", "connections_refused_total",
		"POP3 connections answered -ERR and closed at once because limits.max_connections was reached.", "listener")
	m.logins = f.counterVec("pop3", "logins_total",
		"POP3 login attempts by result: ok, auth_failed, upstream_error, refused_plaintext, rate_limited, "+
			"in_use (limits.lock_session: another session holds the maildrop).", "result")
	m.commands = f.counterVec("pop3", "commands_total",
		"POP3 commands by command and result: ok (+OK), err (-ERR) or aborted (the connection ended mid-answer).", "command", "result")
	m.sentBytes = f.counter("pop3", "sent_bytes_total", "Bytes written to POP3 clients (responses and messages, after dot-stuffing, before TLS).")
	m.retrieved = f.counter("pop3", "messages_retrieved_total", "Messages sent in full by RETR.")
	m.deleted = f.counter("pop3", "messages_deleted_total", "Messages removed upstream by the UPDATE state of a QUIT, as confirmed by the upstream.")
	m.truncated = f.counter("pop3", "truncated_transfers_total",
		"RETR or TOP transfers cut because the message could not be read from the upstream in full; the client got no terminating line.")
	m.sessionDuration = f.histogram("pop3", "session_duration_seconds", "Duration of POP3 connections, from accept to close.",
		[]float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600})
	latency := []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// The upstream label is the configured upstream's name ("default" for
	// upstream, else its key in upstreams): a set the config bounds.
	m.upstreamCommand = f.histogramVec("upstream", "command_duration_seconds",
		"Latency of upstream IMAP commands by upstream and command (LOGIN, AUTHENTICATE, SELECT, UID FETCH, UID STORE, UID EXPUNGE, UID MOVE, UID COPY, LIST, NOOP, LOGOUT).",
		latency, "upstream", "command")
	m.upstreamConnect = f.histogramVec("upstream", "connect_duration_seconds",
		"Time to connect to the upstream IMAP server, by upstream: TCP, TLS and greeting, successful or not.", latency, "upstream")
	m.upstreamConnErrs = f.counterVec("upstream", "connection_errors_total",
		"Upstream connection failures by upstream and stage: connect (dial, TLS, greeting) or command (a connection that broke during a command, a timeout included).",
		"upstream", "stage")
	m.probeUp = f.gaugeVec("upstream", "probe_success", "1 if the last readiness probe of the upstream (connect, greeting, LOGOUT) succeeded, else 0.", "upstream")
	m.probeLastOK = f.gaugeVec("upstream", "probe_last_success_timestamp_seconds", "Unix time of the last successful probe of the upstream.", "upstream")
	m.certExpiry = f.gaugeVec("", "certificate_expiry_seconds",
		"Unix time at which a certificate in use expires (its notAfter), by kind (listener: a POP3 listener's certificate, named by its address; "+
			"upstream_client: the client certificate for an upstream, named by the upstream).", "kind", "name")
	m.draining = f.gauge("", "draining", "1 while the process drains open sessions before it exits, else 0.")
	m.reloads = f.counterVec("", "config_reloads_total", "Configuration reloads (SIGHUP) by result: ok or error (the old configuration stays).", "result")
	m.reloadLastOK = f.gauge("", "config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration load.")
	m.reloadLastOK.SetToCurrentTime()
	m.tokenRequests = f.counterVec("oauth2", "token_refreshes_total",
		"Attempts to get a new OAuth2 access token (refresh or client_credentials) by provider and result: ok, rotated (a new refresh token too), "+
			"revoked (refresh token refused, now or before: run oauth login), missing (none stored), rejected (client or request refused), "+
			"failed (endpoint unreachable or 5xx).",
		"provider", "result")
	m.tokenDuration = f.histogram("oauth2", "token_request_duration_seconds",
		"Duration of requests to OAuth2 token endpoints, successful or not.", latency)
	m.hook = newHookMetrics(f, latency)
	m.cache = newCacheMetrics(f)

	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "ready",
		Help: "1 if /readyz answers 200: listeners bound, upstream probe recent and successful, not draining.",
	}, func() float64 {
		if m.checkReady() == nil {
			return 1
		}
		return 0
	}))
	build := f.gaugeVec("", "build_info", "Always 1; the labels name the running build.", "version", "goversion")
	build.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	for _, r := range loginResults {
		m.logins.WithLabelValues(string(r))
	}
	for _, c := range pop3Commands {
		for _, r := range commandResults {
			m.commands.WithLabelValues(c, r)
		}
	}
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	return m
}

// Registry returns the registry that holds every collector.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetReadyCheck sets the function /readyz and popbridge_ready ask: nil
// error means ready. Until it is set, the process is not ready.
func (m *Metrics) SetReadyCheck(f func() error) {
	m.mu.Lock()
	m.ready = f
	m.mu.Unlock()
}

func (m *Metrics) checkReady() error {
	m.mu.Lock()
	f := m.ready
	m.mu.Unlock()
	if f == nil {
		return errNotStarted
	}
	return f()
}

var errNotStarted = errors.New("not started")

// ProbeDone records a round of readiness probes, each upstream's result
// by its name, for the metrics and for /readyz. An upstream that the
// round lacks is no longer configured: its series go.
func (m *Metrics) ProbeDone(results map[string]error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.probes {
		if _, ok := results[name]; !ok {
			m.probeUp.DeleteLabelValues(name)
			m.probeLastOK.DeleteLabelValues(name)
		}
	}
	m.probes = maps.Clone(results)
	for name, err := range results {
		if err != nil {
			m.probeUp.WithLabelValues(name).Set(0)
			continue
		}
		m.probeUp.WithLabelValues(name).Set(1)
		m.probeLastOK.WithLabelValues(name).SetToCurrentTime()
	}
}

// CertificatesReset forgets every certificate recorded: a new
// configuration records its own.
func (m *Metrics) CertificatesReset() { m.certExpiry.Reset() }

// CertificateLoaded records the expiry of a certificate in use: kind is
// "listener" (name: its address) or "upstream_client" (name: the
// upstream's).
func (m *Metrics) CertificateLoaded(kind, name string, notAfter time.Time) {
	m.certExpiry.WithLabelValues(kind, name).Set(float64(notAfter.Unix()))
}

// ReloadDone records a configuration reload.
func (m *Metrics) ReloadDone(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.reloadLastOK.SetToCurrentTime()
}

// SetDraining records that the process drains before it exits.
func (m *Metrics) SetDraining(on bool) {
	if on {
		m.draining.Set(1)
	} else {
		m.draining.Set(0)
	}
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", m.serveReady)
	return mux
}

// POP3 returns the observer that pop3front.Server.Observer takes.
func (m *Metrics) POP3() pop3front.Observer { return pop3Observer{m} }

// Upstream returns the observer that imapback.Options.Observer takes, for
// the upstream named "default"; its Named method gives one for another
// upstream.
func (m *Metrics) Upstream() UpstreamObserver { return m.upstreamNamed("default") }

func (m *Metrics) upstreamNamed(name string) UpstreamObserver {
	for _, c := range imapCommands {
		m.upstreamCommand.WithLabelValues(name, c)
	}
	m.upstreamConnect.WithLabelValues(name)
	for _, s := range []string{"connect", "command"} {
		m.upstreamConnErrs.WithLabelValues(name, s)
	}
	for _, c := range cacheOutcomes {
		m.cache.lookups.WithLabelValues(name, string(c))
	}
	return UpstreamObserver{m, name}
}

type pop3Observer struct{ m *Metrics }

func (o pop3Observer) ConnOpened(c pop3front.ConnEvent) {
	o.m.connsOpen.WithLabelValues(c.Listener).Inc()
	o.m.connsTotal.WithLabelValues(c.Listener, boolLabel(c.TLS)).Inc()
}

func (o pop3Observer) ConnRefused(c pop3front.ConnEvent) {
	o.m.connsRefused.WithLabelValues(c.Listener).Inc()
}

func (o pop3Observer) LoginDone(_ pop3front.ConnEvent, r pop3front.LoginResult) {
	o.m.logins.WithLabelValues(string(r)).Inc()
}

func (o pop3Observer) CommandDone(_ pop3front.ConnEvent, cmd pop3front.CommandEvent) {
	if cmd.Name == "RETR" && cmd.Result == "ok" {
		// Most commands are this one: its counter is looked up once.
		c := o.m.retrOK.Load()
		if c == nil {
			rc := o.m.commands.WithLabelValues(cmd.Name, cmd.Result)
			c = &rc
			o.m.retrOK.Store(c)
		}
		(*c).Inc()
		o.m.retrieved.Inc()
	} else {
		o.m.commands.WithLabelValues(cmd.Name, cmd.Result).Inc()
	}
	o.m.sentBytes.Add(float64(cmd.Sent))
	if cmd.Truncated {
		o.m.truncated.Inc()
	}
	if cmd.Deleted > 0 {
		o.m.deleted.Add(float64(cmd.Deleted))
	}
}

func (o pop3Observer) ConnClosed(c pop3front.ConnEvent, s pop3front.SessionStats) {
	o.m.connsOpen.WithLabelValues(c.Listener).Dec()
	o.m.sentBytes.Add(float64(s.Unreported))
	o.m.sessionDuration.Observe(s.Duration.Seconds())
}

// Tokens observes the OAuth2 token requests of the token cache
// (proxy.Hooks.Tokens).
func (m *Metrics) Tokens() TokenObserver { return TokenObserver{m} }

// TokenObserver counts OAuth2 token requests; it satisfies
// oauth2.TokenObserver of proxy/oauth2.
type TokenObserver struct{ m *Metrics }

// TokenRequest counts one attempt of provider (a configured name) with
// its result; d > 0 is the duration of the request it made.
func (o TokenObserver) TokenRequest(provider, result string, d time.Duration) {
	o.m.tokenRequests.WithLabelValues(provider, result).Inc()
	if d > 0 {
		o.m.tokenDuration.Observe(d.Seconds())
	}
}

// UpstreamObserver observes the connections and commands of one
// upstream; it satisfies imapback.Observer.
type UpstreamObserver struct {
	m    *Metrics
	name string
}

// Named returns the observer of the upstream named name (a configured
// name, so the label values stay few).
func (o UpstreamObserver) Named(name string) imapback.Observer { return o.m.upstreamNamed(name) }

// Connected records one connection attempt.
func (o UpstreamObserver) Connected(d time.Duration, err error) {
	o.m.upstreamConnect.WithLabelValues(o.name).Observe(d.Seconds())
	if err != nil {
		o.m.upstreamConnErrs.WithLabelValues(o.name, "connect").Inc()
	}
}

// CommandDone records one command.
func (o UpstreamObserver) CommandDone(name string, d time.Duration, err error) {
	o.m.upstreamCommand.WithLabelValues(o.name, name).Observe(d.Seconds())
	// A failed LOGOUT is not counted: the connection it ends is usually
	// one that broke before, and was counted then.
	if name != "LOGOUT" && imapback.ConnectionError(err) {
		o.m.upstreamConnErrs.WithLabelValues(o.name, "command").Inc()
	}
}

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// factory creates collectors in the namespace and registers them.
type factory struct{ reg *prometheus.Registry }

// register registers c with f's registry and returns it.
func register[C prometheus.Collector](f factory, c C) C {
	f.reg.MustRegister(c)
	return c
}

// baseOpts names a counter or a gauge (CounterOpts and GaugeOpts are both
// prometheus.Opts).
func baseOpts(sub, name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: Namespace, Subsystem: sub, Name: name, Help: help}
}

func (f factory) counter(sub, name, help string) prometheus.Counter {
	return register(f, prometheus.NewCounter(prometheus.CounterOpts(baseOpts(sub, name, help))))
}

func (f factory) counterVec(sub, name, help string, labels ...string) *prometheus.CounterVec {
	return register(f, prometheus.NewCounterVec(prometheus.CounterOpts(baseOpts(sub, name, help)), labels))
}

func (f factory) gauge(sub, name, help string) prometheus.Gauge {
	return register(f, prometheus.NewGauge(prometheus.GaugeOpts(baseOpts(sub, name, help))))
}

func (f factory) gaugeVec(sub, name, help string, labels ...string) *prometheus.GaugeVec {
	return register(f, prometheus.NewGaugeVec(prometheus.GaugeOpts(baseOpts(sub, name, help)), labels))
}

func (f factory) histogram(sub, name, help string, buckets []float64) prometheus.Histogram {
	return register(f, prometheus.NewHistogram(histogramOpts(sub, name, help, buckets)))
}

func (f factory) histogramVec(sub, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return register(f, prometheus.NewHistogramVec(histogramOpts(sub, name, help, buckets), labels))
}

func histogramOpts(sub, name, help string, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: name, Help: help, Buckets: buckets}
}
