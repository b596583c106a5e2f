package main

// popbridge uidl import: the old POP3 server's unique-ids of one user's
// messages, matched to the messages of the new IMAP mailbox and written
// into the user's file of a UIDL map directory (docs/uidl.md).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/proxy/uidlmap"
)

// exitPartial: the map was written, but some old messages matched none.
const exitPartial = 3

const uidlUsage = `usage: popbridge uidl import -user USER -imap HOST:PORT [-imap-tls starttls|implicit|none]
           [-mailbox INBOX] [-password-file FILE]
           (-pop3 HOST:PORT [-pop3-tls none|implicit] [-pop3-user USER] [-pop3-password-file FILE]
            | -dovecot-maildir DIR [-old-format FORMAT] | -listing FILE)
           -out DIR [-dry-run] [-timeout 10m]

Matches the old server's unique-ids to the messages of the user's IMAP mailbox by
header hash and size and writes DIR/<user>.uidl for policy.uidl_map. Passwords are
read from the files' first line, or else from $POPBRIDGE_PASSWORD. Exit status 3:
written, but some old messages matched no new one (listed on stdout).`

func uidlCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprintln(stderr, uidlUsage)
		return exitConfig
	}
	fs := flag.NewFlagSet("popbridge uidl import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, uidlUsage+"\n\nflags:"); fs.PrintDefaults() }
	user := fs.String("user", "", "the user name popbridge logs in upstream with (names the map file)")
	imapAddr := fs.String("imap", "", "the new IMAP server's `address`")
	imapTLS := fs.String("imap-tls", "starttls", "starttls, implicit or none")
	mailbox := fs.String("mailbox", "INBOX", "the mailbox popbridge serves")
	passFile := fs.String("password-file", "", "`file` with the user's password")
	pop3Addr := fs.String("pop3", "", "the old POP3 server's `address`")
	pop3TLS := fs.String("pop3-tls", "none", "none or implicit")
	pop3User := fs.String("pop3-user", "", "the user name on the old server (default: -user)")
	pop3PassFile := fs.String("pop3-password-file", "", "`file` with the old server's password (default: -password-file)")
	maildir := fs.String("dovecot-maildir", "", "a Dovecot maildir `dir` holding dovecot-uidlist")
	oldFormat := fs.String("old-format", imapback.DefaultUIDLFormat, "the old Dovecot's pop3_uidl_format (%u and %v only)")
	listing := fs.String("listing", "", "a `file` saved from the old server's UIDL answer: \"<n> <id> [size [hash]]\" lines")
	out := fs.String("out", "", "the map `dir` to write the user's file into")
	dryRun := fs.Bool("dry-run", false, "report, write nothing")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up on the whole run after this long")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	sources := 0
	for _, s := range []string{*pop3Addr, *maildir, *listing} {
		if s != "" {
			sources++
		}
	}
	if *user == "" || *imapAddr == "" || sources != 1 || *out == "" && !*dryRun {
		fmt.Fprintln(stderr, "popbridge uidl import: -user, -imap, -out and exactly one of -pop3, -dovecot-maildir, -listing are needed")
		return exitConfig
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	pass, err := readPassword(*passFile)
	if err != nil {
		fmt.Fprintln(stderr, "popbridge uidl import:", err)
		return exitConfig
	}

	var old []uidlmap.OldMessage
	switch {
	case *pop3Addr != "":
		src := uidlmap.POP3Source{Address: *pop3Addr, ImplicitTLS: *pop3TLS == "implicit", User: *user, Password: pass}
		if *pop3User != "" {
			src.User = *pop3User
		}
		if *pop3PassFile != "" {
			if src.Password, err = readPassword(*pop3PassFile); err != nil {
				fmt.Fprintln(stderr, "popbridge uidl import:", err)
				return exitConfig
			}
		}
		old, err = uidlmap.ReadPOP3(ctx, src)
	case *maildir != "":
		var f *imapback.UIDLFormat
		if f, err = imapback.ParseUIDLFormat(*oldFormat); err == nil {
			if n := f.Needs(); n.Identity || n.HeaderHash {
				err = errors.New("-old-format: only %u and %v can be rebuilt outside Dovecot")
			} else {
				old, err = uidlmap.ReadDovecotMaildir(*maildir, f)
			}
		}
	default:
		var f *os.File
		if f, err = os.Open(*listing); err == nil {
			old, err = uidlmap.ParseListing(f)
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "popbridge uidl import: old ids:", err)
		return exitFail
	}

	c, err := dialIMAP(*imapAddr, *imapTLS)
	if err != nil {
		fmt.Fprintln(stderr, "popbridge uidl import:", err)
		return exitFail
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() }) // unblocks any command
	defer stop()
	if err := c.Login(*user, pass).Wait(); err != nil {
		fmt.Fprintln(stderr, "popbridge uidl import: IMAP login:", err)
		return exitFail
	}
	uidValidity, fresh, err := uidlmap.ReadIMAP(c, *mailbox)
	c.Logout().Wait()
	if err != nil {
		fmt.Fprintln(stderr, "popbridge uidl import: new mailbox:", err)
		return exitFail
	}

	r := uidlmap.Match(old, fresh)
	fmt.Fprintf(stdout, "user %s: %d old messages, %d in %s (UIDVALIDITY %d): %d matched, %d old unmatched, %d new without an old id\n",
		*user, len(old), len(fresh), *mailbox, uidValidity, len(r.UIDLs), len(r.Unmatched), len(r.Fresh))
	for _, m := range r.Unmatched {
		fmt.Fprintf(stdout, "unmatched old %s size %d\n", m.UIDL, m.Size)
	}
	if !*dryRun {
		t := &uidlmap.Table{UIDValidity: uidValidity, Mailbox: *mailbox, UIDLs: r.UIDLs}
		if err := uidlmap.WriteFile(*out, *user, t); err != nil {
			fmt.Fprintln(stderr, "popbridge uidl import:", err)
			return exitFail
		}
	}
	if len(r.Unmatched) > 0 {
		return exitPartial
	}
	return exitOK
}

func readPassword(file string) (string, error) {
	if file == "" {
		if p, ok := os.LookupEnv("POPBRIDGE_PASSWORD"); ok {
			return p, nil
		}
		return "", errors.New("no -password-file and no $POPBRIDGE_PASSWORD")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

func dialIMAP(addr, mode string) (*imapclient.Client, error) {
	switch imapback.TLSMode(mode) {
	case imapback.TLSImplicit:
		return imapclient.DialTLS(addr, nil)
	case imapback.TLSStartTLS:
		return imapclient.DialStartTLS(addr, nil)
	case imapback.TLSNone:
		return imapclient.DialInsecure(addr, nil)
	}
	return nil, fmt.Errorf("-imap-tls %q: want starttls, implicit or none", mode)
}
