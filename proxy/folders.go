// folders.go reads a login name: the upstream user, and the device and
// the folder a login may name after it, "user+Folder#device" with
// policy.folders.separator "+" and policy.devices.separator "#".

package proxy

import (
	"strings"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
)

// loginName is a POP3 login name taken apart.
type loginName struct {
	user   string // the upstream user (before a route rewrites it)
	device string // lower case; empty: none named
	folder string // the mailbox to serve; empty: none named
}

var errBadFolder = &pop3front.Error{Code: "AUTH", Text: "Invalid folder name"}

// split takes the device off at the last device separator (a device name
// cannot hold one), then the folder at the first folder separator, so
// that a folder name may hold the folder separator but not the device
// separator.
func (ps *policies) split(login string) (loginName, error) {
	n := loginName{user: login}
	if sep := ps.devices.Separator; sep != "" {
		if i := strings.LastIndex(n.user, sep); i >= 0 {
			n.user, n.device = n.user[:i], strings.ToLower(n.user[i+1:])
			if n.user == "" || !imapback.ValidDevice(n.device) {
				return loginName{}, errBadDevice
			}
		}
	}
	if sep := ps.folderSep; sep != "" {
		if i := strings.Index(n.user, sep); i >= 0 {
			n.user, n.folder = n.user[:i], n.user[i+1:]
			if n.user == "" || !imapback.ValidMailbox(n.folder) {
				return loginName{}, errBadFolder
			}
		}
	}
	return n, nil
}
