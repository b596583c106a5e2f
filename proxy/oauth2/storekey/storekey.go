// Package storekey makes and reads the key file that seals OAuth2 token
// stores.
package storekey

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
)

// Len is the length of a key: AES-256.
const Len = 32

// Generate writes a new random token-store key to path, base64,
// with mode 0600. It refuses to overwrite a key: that would make the
// tokens sealed with it unreadable.
func Generate(path string) error {
	key := make([]byte, Len)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, base64.StdEncoding.EncodeToString(key))
	return errors.Join(err, f.Close())
}

// Load reads a key written by Generate, or 32 raw octets.
func Load(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) == Len {
		return data, nil
	}
	key, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil || len(key) != Len {
		return nil, fmt.Errorf("%s: want %d random octets, base64 (popbridge oauth keygen)", path, Len)
	}
	return key, nil
}
