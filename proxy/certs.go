package proxy

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReports passes the expiry of a Proxy's certificates to the
// observer: held back while the Proxy is built (a build that fails must
// not replace what the running one reported), all at once when it
// listens, and as they are loaded from then on.
type certReports struct {
	obs       CertificateObserver
	mu        sync.Mutex
	held      []certReport
	published bool
}

type certReport struct {
	kind, name string
	notAfter   time.Time
}

func (r *certReports) loaded(kind, name string, notAfter time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.published {
		r.held = append(r.held, certReport{kind, name, notAfter})
		return
	}
	r.obs.CertificateLoaded(kind, name, notAfter)
}

// publish replaces what the observer knew with the held reports.
func (r *certReports) publish() {
	if r.obs == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs.CertificatesReset()
	for _, c := range r.held {
		r.obs.CertificateLoaded(c.kind, c.name, c.notAfter)
	}
	r.held, r.published = nil, true
}

// certCheckInterval is how often a handshake may look at the certificate
// files' modification times.
const certCheckInterval = time.Second

// certLoader serves a certificate/key pair from files and picks up new
// files without a restart: when their modification time or size changes
// (checked at most once per certCheckInterval, on a handshake), or when
// Reload is called (SIGHUP). A pair that fails to load is logged and the
// old one stays in use, so a half-written renewal never breaks TLS.
type certLoader struct {
	certFile, keyFile string
	log               *slog.Logger
	loaded            func(notAfter time.Time) // nil, or told of every pair loaded

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     fileStamp
	badStamp  fileStamp // files that failed to load: not retried until they change
	lastCheck time.Time
}

// fileStamp identifies a version of the two files.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func newCertLoader(certFile, keyFile string, log *slog.Logger, loaded func(time.Time)) (*certLoader, error) {
	l := &certLoader{certFile: certFile, keyFile: keyFile, log: log, loaded: loaded}
	if err := l.Reload(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *certLoader) statFiles() (fileStamp, error) {
	ci, err1 := os.Stat(l.certFile)
	ki, err2 := os.Stat(l.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return fileStamp{}, err
	}
	return fileStamp{ci.ModTime(), ki.ModTime(), ci.Size(), ki.Size()}, nil
}

// Reload reads the files now. On error the previous certificate stays.
func (l *certLoader) Reload() error {
	stamp, err := l.statFiles()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return err
	}
	l.mu.Lock()
	changed := l.cert != nil && stamp != l.stamp
	l.cert, l.stamp, l.lastCheck = &cert, stamp, time.Now()
	l.mu.Unlock()
	if changed {
		l.log.Info("TLS certificate reloaded", "cert_file", l.certFile, "not_after", cert.Leaf.NotAfter)
	}
	if l.loaded != nil {
		l.loaded(cert.Leaf.NotAfter)
	}
	return nil
}

// GetCertificate is a tls.Config.GetCertificate that serves the current
// pair, reloading it first if the files changed.
func (l *certLoader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	due := time.Since(l.lastCheck) >= certCheckInterval
	if due {
		l.lastCheck = time.Now()
	}
	cert, stamp, bad := l.cert, l.stamp, l.badStamp
	l.mu.Unlock()
	if due {
		if now, err := l.statFiles(); err == nil && now != stamp && now != bad {
			if err := l.Reload(); err != nil {
				l.log.Error("TLS certificate files changed but cannot be loaded; keeping the old certificate",
					"cert_file", l.certFile, "err", err)
				l.mu.Lock()
				l.badStamp = now
				l.mu.Unlock()
			} else {
				l.mu.Lock()
				cert = l.cert
				l.mu.Unlock()
			}
		}
	}
	return cert, nil
}
