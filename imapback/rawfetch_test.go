package imapback

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/popbridge/popbridge/internal/testkit"
)

// tapUnderTest connects an itemTap to a scripted server over a pipe and
// reads everything the tap hands on, as go-imap's reader would.
func tapUnderTest(t *testing.T, answer func(cmd string) string) (*itemTap, net.Conn, <-chan string) {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	tap := &itemTap{Conn: client}
	go func() {
		br := bufio.NewReader(server)
		for {
			cmd, err := br.ReadString('\n')
			if err != nil {
				return
			}
			// Split the answer to exercise lines across reads.
			a := answer(cmd)
			for len(a) > 0 {
				n := min(len(a), 7)
				if _, err := server.Write([]byte(a[:n])); err != nil {
					return
				}
				a = a[n:]
			}
		}
	}()
	passed := make(chan string, 1)
	go func() {
		data, _ := io.ReadAll(tap)
		passed <- string(data)
	}()
	return tap, client, passed
}

func TestItemTapTakesOnlyItsAnswers(t *testing.T) {
	var sent string
	other := "* 3 EXPUNGE\r\n" +
		"* 2 FETCH (FLAGS (\\Seen) UID 6)\r\n" +
		"* LIST () \"/\" {30}\r\n* 9 FETCH (UID 9 X-GUID zz)\r\n\r\n" + // a literal that looks like an answer
		"* 4 EXISTS\r\n"
	tap, conn, passed := tapUnderTest(t, func(cmd string) string {
		sent = cmd
		return "* 3 EXPUNGE\r\n* 1 FETCH (UID 5 X-GUID abc)\r\n" +
			"* 2 FETCH (FLAGS (\\Seen) UID 6)\r\n" +
			"* LIST () \"/\" {30}\r\n* 9 FETCH (UID 9 X-GUID zz)\r\n\r\n" +
			"* 5 FETCH (X-GUID \"d\\\"ef\" UID 7)\r\n" +
			rawTag + " OK done\r\n* 4 EXISTS\r\n"
	})
	got, err := tap.fetch(imap.UIDSet{{Start: 5, Stop: 7}}, "X-GUID", 5*time.Second, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sent != rawTag+" UID FETCH 5:7 (UID X-GUID)\r\n" {
		t.Errorf("sent %q", sent)
	}
	if want := map[imap.UID]string{5: "abc", 7: "d\"ef"}; !reflect.DeepEqual(got, want) {
		t.Errorf("fetch = %v, want %v", got, want)
	}
	time.Sleep(50 * time.Millisecond) // let the reader take the rest
	conn.Close()
	if p := <-passed; p != other {
		t.Errorf("passed on\n%q\nwant\n%q", p, other)
	}
}

func TestItemTapRefused(t *testing.T) {
	tap, conn, _ := tapUnderTest(t, func(string) string {
		return rawTag + " BAD Error in IMAP command UID FETCH: Unknown parameter X-GUID\r\n"
	})
	_, err := tap.fetch(imap.UIDSet{{Start: 1, Stop: 0}}, "X-GUID", 5*time.Second, conn, nil)
	if !errors.Is(err, errRawRefused) || !strings.Contains(err.Error(), "Unknown parameter") {
		t.Errorf("fetch = %v, want a refusal with the server's text", err)
	}
}

// A hostile or broken answer ends the fetch with an error, never a hang.
func TestItemTapBadAnswers(t *testing.T) {
	for _, answer := range []string{
		"* 1 FETCH (UID 5 X-GUID a\x01b)\r\n" + rawTag + " OK\r\n", // not a valid id
		"* 1 FETCH (X-GUID abc)\r\n" + rawTag + " OK\r\n",          // no UID
		"* 1 FETCH (UID 5 X-GUID " + strings.Repeat("a", maxRawLine+10),
		"", // silence: the timeout closes the connection
	} {
		tap, conn, _ := tapUnderTest(t, func(string) string { return answer })
		_, err := tap.fetch(imap.UIDSet{{Start: 1, Stop: 0}}, "X-GUID", time.Second, conn, nil)
		if err == nil {
			t.Errorf("answer %.60q: no error", answer)
		}
	}
}

// An upstream that hangs up instead of answering the tap's command, while
// go-imap's reader waits for input with no command armed (the usual case:
// the command goes out after the snapshot's answer was read), ends the
// command with the read's error. go-imap's reader is gone after that
// read, and the timeout's close of the connection reaches nobody: the
// login must fail, not wait for an answer no reader will take.
func TestIdentityFetchEndsWhenUpstreamHangsUpWhileIdle(t *testing.T) {
	srv, err := testkit.ServeConns(10*time.Second, func(nc net.Conn) {
		br := bufio.NewReader(nc)
		io.WriteString(nc, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN UIDPLUS] ready\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(line, " ")
			switch {
			case tag == rawTag:
				time.Sleep(50 * time.Millisecond) // go-imap's reader waits
				return                            // and the connection closes
			case strings.HasPrefix(rest, "SELECT"):
				io.WriteString(nc, "* 1 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n")
			case strings.HasPrefix(rest, "UID FETCH"):
				io.WriteString(nc, "* 1 FETCH (UID 1 RFC822.SIZE 10)\r\n")
			}
			io.WriteString(nc, tag+" OK done\r\n")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	b := newBackend(t, Options{Address: srv.Addr, Auth: AuthLogin, UIDL: uidlFormat(t, "%g"), CommandTimeout: time.Second})
	done := make(chan error, 1)
	go func() {
		s, err := b.Login(context.Background(), Credentials{User: "u", Password: "p"}, b.DefaultPolicy())
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("login: %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("login still waiting for the identities 5 s after the upstream hung up")
	}
}

// go-imap's reader may stop (the upstream hung up right after its last
// answer) before the tap's command is armed, and its close of the
// connection may come after the command went out: the command then ends
// with the reader, as a batch's does, instead of waiting for a read that
// nobody makes.
func TestItemTapEndsWhenGoIMAPsReaderIsGone(t *testing.T) {
	client, server := tcpPair(t)
	tap := &itemTap{Conn: client}
	closed := make(chan struct{})
	go func() { // go-imap's reader: it stops at the first error
		defer close(closed)
		p := make([]byte, 4096)
		for {
			if _, err := tap.Read(p); err != nil {
				return
			}
		}
	}()
	server.(*net.TCPConn).CloseRead()
	server.(*net.TCPConn).CloseWrite()
	<-closed
	done := make(chan error, 1)
	go func() {
		_, err := tap.fetch(imap.UIDSetNum(5), "X-GUID", 100*time.Millisecond, client, closed)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("fetch without a reader: no error")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("fetch still waiting 3 s after go-imap's reader stopped")
	}
}
