package imapback

// What the scanner of boundedConn (boundscan.go) compares octets with:
// go-imap's atom octets, the octets that end its tight loops, and the
// few keywords it must recognise, packed into integers so that a
// comparison costs one instruction.

// atomKey holds the first 8 octets of an atom in upper case, packed for
// comparisons with keywords, and how many octets it has.
type atomKey struct {
	k uint64
	n int
}

func (a *atomKey) add(b byte) {
	if a.n < 8 {
		a.k = a.k<<8 | uint64(upper(b))
	}
	a.n++
}

// is reports whether the atom is kw, a key of keyOf.
func (a atomKey) is(kw uint64) bool { return a.n <= 8 && a.k == kw }

// keyOf packs an upper-case keyword of up to 8 octets. Atoms hold no
// NUL, so keys of different lengths differ.
func keyOf(kw string) uint64 {
	var k uint64
	for i := range len(kw) {
		k = k<<8 | uint64(kw[i])
	}
	return k
}

var (
	kwFETCH, kwBODY, kwBINARY         = keyOf("FETCH"), keyOf("BODY"), keyOf("BINARY")
	kwOK, kwNO, kwBAD, kwBYE, kwPREAU = keyOf("OK"), keyOf("NO"), keyOf("BAD"), keyOf("BYE"), keyOf("PREAUTH")
	kwCAPABILI                        = keyOf("CAPABILI") // CAPABILITY: 10 octets, the first 8 kept
)

// isCapability reports whether a is CAPABILITY.
func (a atomKey) isCapability() bool { return a.n == len("CAPABILITY") && a.k == kwCAPABILI }

// Octet classes of the tight loops in run: an octet marked stops the
// loop of its state.
var (
	atomOctet   [256]bool // go-imap's IsAtomChar
	dataStop    = [256]bool{'"': true, '{': true, '\n': true, '(': true, ')': true}
	topStop     = [256]bool{'"': true, '{': true, '\n': true, '(': true, ')': true, '[': true}
	sectionStop = [256]bool{'"': true, '{': true, '\n': true, '(': true, ')': true, ']': true}
)

func init() {
	for b := range 256 {
		atomOctet[b] = isAtomOctet(byte(b))
	}
}

// isAtomOctet is go-imap's IsAtomChar for one octet.
func isAtomOctet(b byte) bool {
	switch b {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return b > 0x1f && b != 0x7f && (b < 0x80 || b > 0x9f)
}

func satAdd(a, b int64) int64 {
	if b > 1<<63-1-a {
		return 1<<63 - 1
	}
	return a + b
}

func upper(b byte) byte {
	if b >= 'a' && b <= 'z' {
		return b - 'a' + 'A'
	}
	return b
}
