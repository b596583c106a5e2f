package uidlmap

// The new mailbox, read without changing it: EXAMINE, then one UID FETCH
// of every message's UID, size and header (BODY.PEEK: no \Seen).

import (
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapback"
)

// ReadIMAP lists mailbox on a logged-in client: its UIDVALIDITY and its
// messages in UID order with their sizes and header hashes.
func ReadIMAP(c *imapclient.Client, mailbox string) (uint32, []NewMessage, error) {
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return 0, nil, fmt.Errorf("EXAMINE %q: %w", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return sel.UIDValidity, nil, nil
	}
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	cmd := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section},
	})
	var msgs []NewMessage
	var herr error
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		var nm NewMessage
		for item := m.Next(); item != nil; item = m.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				nm.UID = item.UID
			case imapclient.FetchItemDataRFC822Size:
				nm.Size = item.Size
			case imapclient.FetchItemDataBodySection:
				h, err := imapback.HeaderHash(item.Literal)
				if err != nil && herr == nil {
					herr = err
				}
				nm.Hash = h
			}
		}
		if nm.UID != 0 && nm.Hash != "" {
			msgs = append(msgs, nm)
		}
	}
	if err := cmd.Close(); err != nil {
		return 0, nil, fmt.Errorf("UID FETCH: %w", err)
	}
	if herr != nil {
		return 0, nil, herr
	}
	return sel.UIDValidity, msgs, nil
}
