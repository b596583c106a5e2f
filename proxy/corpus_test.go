package proxy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusMessage is one message of the interoperability corpus: awkward
// shapes that real mail has and that servers and clients trip over.
type corpusMessage struct {
	name string
	raw  []byte // the bytes as stored in the maildir, unconverted
	// big messages are compared by RETR and TOP 0 only, to keep the
	// suite fast.
	big bool
}

// loadCorpus returns the committed small messages of testdata/corpus (in
// file name order; see gen.go there for how each was made) followed by the
// large ones, generated here deterministically instead of being committed.
func loadCorpus(t testing.TB) []corpusMessage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("corpus: no testdata/corpus/*.eml (%v)", err)
	}
	var msgs []corpusMessage
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, corpusMessage{name: strings.TrimSuffix(filepath.Base(f), ".eml"), raw: raw})
	}
	return append(msgs,
		corpusMessage{name: "base64-attachment", raw: base64AttachmentMessage(3 << 20)},
		corpusMessage{name: "20mib", raw: twentyMiBMessage(), big: true},
	)
}

// base64AttachmentMessage is a multipart/mixed message with a text part and
// an attachment of n pseudo-random octets in base64 lines of 76 characters,
// the same bytes on every run.
func base64AttachmentMessage(n int) []byte {
	rnd := rand.New(rand.NewChaCha8([32]byte{'p', 'o', 'p', 'b', 'r', 'i', 'd', 'g', 'e'}))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	b.WriteString("From: sender@example.org\r\nTo: alice@example.org\r\nSubject: base64-attachment\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_b64\"\r\n\r\n" +
		"--=_b64\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attachment.\r\n.\r\n" +
		"--=_b64\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\r\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n--=_b64--\r\n")
	return b.Bytes()
}

// twentyMiBMessage is a 20 MiB text message with numbered lines, some of
// which begin with a dot.
func twentyMiBMessage() []byte {
	const size = 20 << 20
	b := bytes.NewBuffer(make([]byte, 0, size+100))
	b.WriteString("From: sender@example.org\r\nTo: alice@example.org\r\nSubject: 20mib\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		if i%1000 == 0 {
			b.WriteByte('.')
		}
		fmt.Fprintf(b, "%08d the quick brown fox jumps over the lazy dog, again and again and again\r\n", i)
	}
	return b.Bytes()
}
