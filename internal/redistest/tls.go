package redistest

// This file holds the TLS files of a server started with Options.TLS.

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"

	"github.com/popbridge/popbridge/internal/testkit"
)

// writeTLSFiles writes a self-signed certificate for 127.0.0.1 and its key
// as the PEM files redis-server reads; the certificate doubles as the CA
// file that clients trust.
func (s *Server) writeTLSFiles() {
	s.t.Helper()
	server, client := testkit.SelfSignedTLS(s.t)
	pair := server.Certificates[0]
	key, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	s.certFile = filepath.Join(s.Dir, "cert.pem")
	s.keyFile = filepath.Join(s.Dir, "key.pem")
	s.CAFile = s.certFile
	s.clientTLS = client
	for name, block := range map[string]*pem.Block{
		s.certFile: {Type: "CERTIFICATE", Bytes: pair.Certificate[0]},
		s.keyFile:  {Type: "PRIVATE KEY", Bytes: key},
	} {
		if err := os.WriteFile(name, pem.EncodeToMemory(block), 0o600); err != nil {
			s.t.Fatalf("redistest: %v", err)
		}
	}
}
