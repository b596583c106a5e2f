// Package passhash makes and checks the argon2id and bcrypt hashes of local
// passwords.
package passhash

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Local passwords (of OAuth2 accounts) are stored only as argon2id (the
// PHC string format of the reference implementation) or bcrypt hashes.

// Argon2id parameters of Argon2id: OWASP's recommendation of 19 MiB,
// two passes, one lane. Checking a password costs about 20 ms of CPU and
// 19 MiB, so callers bound how many checks run at once.
const (
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
)

// Bounds on parameters read from a config, so that a typo cannot make
// every login allocate gigabytes.
const (
	maxArgonMemory  = 256 * 1024 // KiB
	maxArgonTime    = 20
	maxArgonThreads = 16
)

var b64 = base64.RawStdEncoding

// Argon2id returns an argon2id hash of password in the PHC string
// format: $argon2id$v=19$m=19456,t=2,p=1$SALT$HASH.
func Argon2id(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Hash is a parsed argon2id or bcrypt hash; its zero value matches no
// password.
type Hash struct {
	bcrypt []byte // the whole bcrypt hash, or nil for argon2id

	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// Parse accepts what Argon2id and Bcrypt write, any argon2id hash
// with parameters inside the bounds above, and bcrypt ($2a$, $2b$, $2y$).
func Parse(s string) (Hash, error) {
	switch {
	case s == "":
		return Hash{}, errors.New("required (popbridge hash-password)")
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return Hash{}, fmt.Errorf("bcrypt: %v", err)
		}
		return Hash{bcrypt: []byte(s)}, nil
	case !strings.HasPrefix(s, "$argon2id$"):
		return Hash{}, errors.New("not an argon2id or bcrypt hash (popbridge hash-password)")
	}
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	f := strings.Split(s, "$")
	if len(f) != 6 {
		return Hash{}, errors.New("argon2id: want $argon2id$v=19$m=M,t=T,p=P$SALT$HASH")
	}
	var version int
	if _, err := fmt.Sscanf(f[2], "v=%d", &version); err != nil || version != argon2.Version {
		return Hash{}, fmt.Errorf("argon2id: version %q, want v=%d", f[2], argon2.Version)
	}
	var h Hash
	var threads uint32
	if n, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &h.memory, &h.time, &threads); err != nil || n != 3 ||
		fmt.Sprintf("m=%d,t=%d,p=%d", h.memory, h.time, threads) != f[3] {
		return Hash{}, fmt.Errorf("argon2id: parameters %q, want m=M,t=T,p=P", f[3])
	}
	if h.time < 1 || h.time > maxArgonTime || threads < 1 || threads > maxArgonThreads ||
		h.memory < 8*threads || h.memory > maxArgonMemory {
		return Hash{}, fmt.Errorf("argon2id: parameters %q outside 1<=t<=%d, 1<=p<=%d, 8p<=m<=%d",
			f[3], maxArgonTime, maxArgonThreads, maxArgonMemory)
	}
	h.threads = uint8(threads)
	var err error
	if h.salt, err = b64.DecodeString(f[4]); err != nil || len(h.salt) < 8 {
		return Hash{}, errors.New("argon2id: salt must be unpadded base64 of at least 8 octets")
	}
	if h.key, err = b64.DecodeString(f[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return Hash{}, errors.New("argon2id: hash must be unpadded base64 of 16 to 64 octets")
	}
	return h, nil
}

// Verify reports whether password matches, in time that does not depend
// on where the two differ.
func (h Hash) Verify(password string) bool {
	if h.bcrypt != nil {
		return bcrypt.CompareHashAndPassword(h.bcrypt, []byte(password)) == nil
	}
	if h.key == nil {
		return false
	}
	key := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}

// Bcrypt returns a bcrypt hash of password (cost 10, $2a$), for configs
// that other tools share. bcrypt reads only the first 72 octets, so longer
// passwords are refused.
func Bcrypt(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}
