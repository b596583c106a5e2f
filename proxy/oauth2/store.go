package oauth2

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/oauth2/storekey"
)

// A token store keeps each account's refresh token (and its last access
// token) across restarts. Two kinds:
//
//   - file: one file for all accounts, sealed with AES-256-GCM under a key
//     of its own (key_file), written with mode 0600 by replacing it
//     atomically, under an advisory lock so that `popbridge oauth login`
//     and a running daemon do not overwrite each other's updates.
//   - dir: one file per account, named after it, as a mounted Kubernetes
//     Secret lays them out; sealed like the file when key_file is set,
//     plain JSON otherwise. A read-only mount cannot take a rotated
//     refresh token: Save then fails and the caller keeps it in memory.
//   - redis: one value per account in the Redis or Valkey server of the
//     state section, sealed like a dir store's file, shared by replicas
//     (store_redis.go).

// errNoToken: the account has never been authorised (or its token was
// removed).
var errNoToken = errors.New("no token stored")

// Store keeps the tokens of accounts by account name.
type Store interface {
	Load(account string) (*oauth2.Token, error)
	Save(account string, tok *oauth2.Token) error
}

// OpenStore opens the configured store; it returns nil if none is
// configured. A store that implements io.Closer must be closed after
// use.
func OpenStore(s config.TokenStoreConfig) (Store, error) {
	var key []byte
	if s.KeyFile != "" {
		var err error
		if key, err = storekey.Load(s.KeyFile); err != nil {
			return nil, err
		}
	}
	switch {
	case s.Type == config.TokenStoreRedis:
		return openRedisStore(s.State, key)
	case s.File != "":
		return &fileStore{path: s.File, key: key}, nil
	case s.Dir != "":
		return &dirStore{dir: s.Dir, key: key}, nil
	}
	return nil, nil
}

// sealed is the on-disk form of encrypted content.
type sealed struct {
	Format int    `json:"popbridge_token_store"`
	Nonce  []byte `json:"nonce"`
	Data   []byte `json:"sealed"`
}

const sealFormat = 1

// seal encrypts plain; aad binds it to its place (the account, for dir
// stores), so that files cannot be swapped between accounts unnoticed.
func seal(key, plain []byte, aad string) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return json.Marshal(sealed{Format: sealFormat, Nonce: nonce, Data: gcm.Seal(nil, nonce, plain, []byte(aad))})
}

// unseal reverses seal.
func unseal(key, data []byte, aad string) ([]byte, error) {
	var s sealed
	if err := json.Unmarshal(data, &s); err != nil || s.Format != sealFormat {
		return nil, errors.New("not a sealed popbridge token store")
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != gcm.NonceSize() {
		return nil, errors.New("sealed token store: bad nonce")
	}
	plain, err := gcm.Open(nil, s.Nonce, s.Data, []byte(aad))
	if err != nil {
		return nil, errors.New("sealed token store: wrong key or damaged content")
	}
	return plain, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// fileStore is the single sealed file.
type fileStore struct {
	path string
	key  []byte
	mu   sync.Mutex // serialises this process; the file lock, processes
}

type fileContent struct {
	Accounts map[string]*oauth2.Token `json:"accounts"`
}

const fileAAD = "popbridge token store file"

func (s *fileStore) Load(account string) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.read()
	if err != nil {
		return nil, err
	}
	tok := c.Accounts[account]
	if tok == nil {
		return nil, errNoToken
	}
	return tok, nil
}

func (s *fileStore) Save(account string, tok *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	c, err := s.read()
	if err != nil {
		return err
	}
	c.Accounts[account] = tok
	plain, err := json.Marshal(c)
	if err != nil {
		return err
	}
	data, err := seal(s.key, plain, fileAAD)
	if err != nil {
		return err
	}
	return replaceFile(s.path, data)
}

// read returns the file's content; a missing file is an empty store.
func (s *fileStore) read() (fileContent, error) {
	c := fileContent{Accounts: make(map[string]*oauth2.Token)}
	_, err := readStored(s.path, func(data []byte) error {
		plain, err := unseal(s.key, data, fileAAD)
		if err != nil {
			return err
		}
		return json.Unmarshal(plain, &c)
	})
	if err != nil {
		return c, err
	}
	if c.Accounts == nil {
		c.Accounts = make(map[string]*oauth2.Token)
	}
	return c, nil
}

// dirStore keeps one file per account.
type dirStore struct {
	dir string
	key []byte // nil: plain JSON
	mu  sync.Mutex
}

func (s *dirStore) Load(account string) (*oauth2.Token, error) {
	var tok *oauth2.Token
	found, err := readStored(filepath.Join(s.dir, account), func(data []byte) (err error) {
		tok, err = decodeToken(s.key, account, data)
		return err
	})
	if err == nil && !found {
		err = errNoToken
	}
	return tok, err
}

// readStored reads the file at path and hands its content to decode;
// found is false when there is no such file. A decode error names the
// file.
func readStored(path string, decode func([]byte) error) (found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := decode(data); err != nil {
		return true, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

func (s *dirStore) Save(account string, tok *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := encodeToken(s.key, account, tok)
	if err != nil {
		return err
	}
	return replaceFile(filepath.Join(s.dir, account), data)
}

// encodeToken is one account's token as a dir or Redis store keeps it:
// JSON, sealed when key is set, bound to the account so that values
// cannot be swapped between accounts unnoticed. The two stores share the
// form, so that a dir store's file can be copied into Redis as it is.
func encodeToken(key []byte, account string, tok *oauth2.Token) ([]byte, error) {
	data, err := json.Marshal(tok)
	if err != nil || key == nil {
		return data, err
	}
	return seal(key, data, "popbridge token "+account)
}

// decodeToken reverses encodeToken.
func decodeToken(key []byte, account string, data []byte) (*oauth2.Token, error) {
	var err error
	if key != nil {
		if data, err = unseal(key, data, "popbridge token "+account); err != nil {
			return nil, err
		}
	}
	tok := new(oauth2.Token)
	if err := json.Unmarshal(data, tok); err != nil {
		return nil, err
	}
	return tok, nil
}

// replaceFile replaces path with data, mode 0600, so that a crash
// leaves either the old or the new content, never a torn file.
func replaceFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
