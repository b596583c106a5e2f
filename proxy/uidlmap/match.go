package uidlmap

// Matching the messages of an old POP3 maildrop to those of the new IMAP
// mailbox, as Dovecot's pop3_migration plugin does: by the hash of the
// header (imapback.HeaderHash), sizes telling apart equal headers.

import "github.com/emersion/go-imap/v2"

// OldMessage is a message as the old server listed it.
type OldMessage struct {
	UIDL string
	Size int64  // -1: unknown
	Hash string // header hash; "": unknown (then only Size and order match)
}

// NewMessage is a message of the new mailbox.
type NewMessage struct {
	UID  imap.UID
	Size int64
	Hash string
}

// Result is what Match found.
type Result struct {
	UIDLs map[imap.UID]string
	// Unmatched are the old messages no new one matched: not migrated,
	// or altered on the way. A client that has them downloads nothing
	// for them (they are gone), and any new message they were meant to
	// match gets a new id: one download again.
	Unmatched []OldMessage
	// Fresh are the new messages no old one matched (new mail, or those
	// altered ones).
	Fresh []NewMessage
}

// Match pairs old and new messages, both in their mailbox order. A hash
// matches the first untaken new message with that hash, preferring one of
// the same size: equal headers pair off in order. An old message without
// a hash matches the new message at its position if that one is untaken,
// has no other claim and has the same size.
func Match(old []OldMessage, fresh []NewMessage) Result {
	r := Result{UIDLs: make(map[imap.UID]string)}
	byHash := make(map[string][]int)
	for i, m := range fresh {
		byHash[m.Hash] = append(byHash[m.Hash], i)
	}
	taken := make([]bool, len(fresh))
	matched := make([]bool, len(old))
	for i, o := range old {
		if o.Hash == "" {
			continue
		}
		pick := -1
		for _, j := range byHash[o.Hash] {
			if taken[j] {
				continue
			}
			if pick < 0 {
				pick = j
			}
			if o.Size < 0 || fresh[j].Size == o.Size {
				pick = j
				break
			}
		}
		if pick >= 0 {
			taken[pick], matched[i] = true, true
			r.UIDLs[fresh[pick].UID] = o.UIDL
		}
	}
	for i, o := range old {
		if o.Hash != "" || i >= len(fresh) || taken[i] || o.Size < 0 || fresh[i].Size != o.Size {
			continue
		}
		taken[i], matched[i] = true, true
		r.UIDLs[fresh[i].UID] = o.UIDL
	}
	for i, o := range old {
		if !matched[i] {
			r.Unmatched = append(r.Unmatched, o)
		}
	}
	for j, m := range fresh {
		if !taken[j] {
			r.Fresh = append(r.Fresh, m)
		}
	}
	return r
}
