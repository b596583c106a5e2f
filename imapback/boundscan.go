package imapback

// The scanner of boundedConn (bounds.go): a byte state machine over the
// upstream's response stream that knows just enough of IMAP's response
// grammar, read the way go-imap's client reads it, to tell where each
// response starts and ends and which octets are literals. It runs in
// imapclient's reader goroutine, on the buffer imapclient reads into: it
// never copies, and the octets of a literal cost it one subtraction per
// Read.

// scanState is where the scanner is within a response.
type scanState uint8

const (
	stStart     scanState = iota // the first octet of a response
	stTag                        // the tag, or "*"
	stType                       // the response type, or the number before it
	stStatusSP                   // after OK, NO, BAD, BYE or PREAUTH and a space
	stCode                       // a response code, up to "]" (line ends included)
	stText                       // free text, up to the line end
	stData                       // structured data: lists, atoms, strings
	stQuoted                     // in a quoted string (line ends included)
	stQuotedEsc                  // after a backslash in a quoted string
	stLitSize                    // after "{": the digits of a literal's size
	stLitPlus                    // after "{N+"
	stLitClose                   // after "}"
	stLitSP                      // after "} "
	stLitCR                      // after "}\r" or "} \r"
	stLiteral                    // in a literal
)

// fetchItem follows the top list of a FETCH response far enough to
// tell a body literal: BODY[...] or BINARY[...], then <offset>, a space
// and "~" at most, then "{".
type fetchItem uint8

const (
	fiNone      fetchItem = iota
	fiSection             // inside BODY[ or BINARY[, before its "]"
	fiAfter               // after the "]" (and perhaps <offset>)
	fiBodyValue           // after the space: a literal now is the body
)

// scanner holds the state of one connection's response stream.
type scanner struct {
	c   *boundedConn
	lim ResponseLimits

	st     scanState
	octets int64 // of the current response, body literals left out
	// maxOctets bounds octets: the response bound, or what is left of
	// the bound of the responses together (total), whichever is less;
	// set at each response's start.
	maxOctets int64
	total     int64 // octets of the responses since Expect (gen)
	maxTotal  int64 // their bound, 0: none
	gen       int64
	byTotal   bool  // maxOctets is what is left of maxTotal
	lit       int64 // literal octets still to come
	size      int64 // the size being read in a literal's header
	digits    int   // digits read of it
	body      bool  // the literal being announced or read is a body

	// The response's header: tagged or not, whether the number before
	// the type was read, and the type so far.
	untagged, numbered bool
	typ                atomKey
	allDigits          bool
	// caps: the response is a capability list, untagged or as a response
	// code (whose name code holds until codeDone).
	caps     bool
	code     atomKey
	codeDone bool

	// FETCH responses: list depth, the atom being read in the top list
	// and the body item state.
	fetch bool
	depth int
	tok   atomKey
	item  fetchItem
}

// scan follows p, the next octets of the stream. It returns how many of
// them may be passed on: all, or those before the first octet past a
// bound, with the bound's error.
func (s *scanner) scan(p []byte) (int, *BoundError) {
	i := 0
	for i < len(p) {
		if s.st == stLiteral {
			k := int(min(s.lit, int64(len(p)-i)))
			i += k
			s.lit -= int64(k)
			if s.lit == 0 {
				s.st = stData
			}
			continue
		}
		if s.st == stStart {
			s.startResponse()
			n, limit := s.c.responses.Add(1), s.c.maxResponses.Load()
			if limit > 0 && n > limit {
				return i, &BoundError{Bound: BoundResponses, Limit: limit, Got: n}
			}
		}
		// Runs of octets that change nothing but the count.
		if run := s.run(p[i:]); run > 0 {
			if int64(run) > s.maxOctets-s.octets {
				return i + int(s.maxOctets-s.octets), s.tooLong(s.maxOctets + 1)
			}
			s.octets += int64(run)
			i += run
			continue
		}
		s.octets++
		if s.octets > s.maxOctets {
			return i, s.tooLong(s.octets)
		}
		if err := s.step(p[i]); err != nil {
			return i, err
		}
		i++
	}
	return len(p), nil
}

// tooLong is the error of a response past maxOctets, by got octets.
func (s *scanner) tooLong(got int64) *BoundError {
	if s.byTotal {
		return &BoundError{Bound: BoundOctets, Limit: s.maxTotal, Got: satAdd(s.total, got)}
	}
	return &BoundError{Bound: BoundResponse, Limit: s.maxOctets, Got: got}
}

func (s *scanner) startResponse() {
	s.total += s.octets // the previous response's
	if g := s.c.gen.Load(); g != s.gen {
		s.gen, s.total, s.maxTotal = g, 0, s.c.maxTotal.Load()
	}
	s.maxOctets = s.c.maxOctets.Load()
	s.byTotal = s.maxTotal > 0 && s.maxTotal-s.total < s.maxOctets
	if s.byTotal {
		s.maxOctets = s.maxTotal - s.total
	}
	s.st, s.octets = stTag, 0
	s.untagged, s.numbered, s.fetch, s.depth, s.item, s.tok = false, false, false, 0, fiNone, atomKey{}
	s.caps = false
}

// run returns how many octets at the start of p the current state
// passes over in a tight loop: those that change nothing but the count
// or the atom being read. step takes the octet that stops it.
func (s *scanner) run(p []byte) int {
	n := 0
	switch s.st {
	case stText:
		for n < len(p) && p[n] != '\n' {
			n++
		}
	case stCode:
		if !s.codeDone {
			return 0 // step reads the code's name
		}
		for n < len(p) && p[n] != ']' && (p[n] != '(' || !s.caps) {
			n++
		}
	case stQuoted:
		for n < len(p) && p[n] != '"' && p[n] != '\\' {
			n++
		}
	case stTag:
		if s.octets == 0 {
			return 0 // the first octet tells "*" and "+" from a tag
		}
		for n < len(p) && p[n] != ' ' && p[n] != '\n' {
			n++
		}
	case stType:
		typ, digits := s.typ, s.allDigits
		for ; n < len(p) && atomOctet[p[n]]; n++ {
			b := p[n]
			typ.add(b)
			digits = digits && b >= '0' && b <= '9'
		}
		s.typ, s.allDigits = typ, digits
	case stData:
		switch {
		case !s.fetch || s.depth != 1:
			for n < len(p) && !dataStop[p[n]] {
				n++
			}
		case s.item == fiNone:
			// The top list of a FETCH: remember the atom before a "[",
			// the one the run ends with (or continues).
			start := 0
			for ; n < len(p) && !topStop[p[n]]; n++ {
				if !atomOctet[p[n]] {
					start = n + 1
				}
			}
			tok := s.tok
			if start > 0 {
				tok = atomKey{}
			}
			for _, b := range p[start:min(n, start+9)] {
				tok.add(b) // 9 octets tell any atom from a keyword
			}
			s.tok = tok
		case s.item == fiSection:
			for n < len(p) && !sectionStop[p[n]] {
				n++
			}
		}
	}
	return n
}

// step moves the state machine by one octet b (outside a literal).
func (s *scanner) step(b byte) *BoundError {
	switch s.st {
	case stTag:
		switch b {
		case ' ':
			s.st, s.typ, s.allDigits = stType, atomKey{}, true
		case '\n':
			s.st = stStart
		case '+':
			if s.octets == 1 { // a continuation request: free text
				s.st = stText
			}
		case '*':
			if s.octets == 1 {
				s.untagged = true
			}
		}
	case stType:
		return s.endType(b) // run took the type's atom octets
	case stStatusSP:
		if b == '[' {
			s.st, s.code, s.codeDone = stCode, atomKey{}, false
			return nil
		}
		s.st = stText
		return s.step(b)
	case stCode:
		if !s.codeDone {
			if atomOctet[b] {
				s.code.add(b)
				return nil
			}
			s.codeDone, s.caps = true, s.code.isCapability()
		}
		switch {
		case b == ']':
			s.st = stText
		case b == '(' && s.caps:
			return &BoundError{Bound: BoundCapability}
		}
	case stText:
		if b == '\n' {
			s.st = stStart
		}
	case stQuoted:
		switch b {
		case '"':
			s.st = stData
		case '\\':
			s.st = stQuotedEsc
		}
	case stQuotedEsc:
		s.st = stQuoted
	case stData:
		return s.data(b)
	case stLitSize:
		return s.litSize(b)
	case stLitPlus:
		if b == '}' {
			s.st = stLitClose
			return nil
		}
		return s.notLiteral(b)
	case stLitClose:
		switch b {
		case ' ':
			s.st = stLitSP
			return nil
		case '\r':
			s.st = stLitCR
			return nil
		}
		fallthrough
	case stLitSP, stLitCR:
		if b == '\n' {
			return s.startLiteral()
		}
		if b == '\r' && s.st == stLitSP {
			s.st = stLitCR
			return nil
		}
		return s.notLiteral(b)
	}
	return nil
}

// endType classifies the response by its type, which b ends.
func (s *scanner) endType(b byte) *BoundError {
	switch {
	case s.untagged && !s.numbered && s.typ.n > 0 && s.allDigits:
		// "* 3 EXISTS": the type follows the number.
		s.numbered = true
		if b == ' ' {
			s.typ, s.allDigits = atomKey{}, true
			return nil
		}
		s.st = stData
	case !s.untagged || s.isStatus():
		// A tagged response is read as a status whatever its type.
		if b == ' ' {
			s.st = stStatusSP
			return nil
		}
		s.st = stText
	default:
		// go-imap reads a FETCH without a number too.
		s.fetch = s.typ.is(kwFETCH)
		s.caps = s.typ.isCapability()
		s.st = stData
	}
	return s.step(b)
}

func (s *scanner) isStatus() bool {
	t := s.typ
	return t.is(kwOK) || t.is(kwNO) || t.is(kwBAD) || t.is(kwBYE) || t.is(kwPREAU)
}

// data handles an octet of structured data.
func (s *scanner) data(b byte) *BoundError {
	if b == '{' {
		s.body = s.fetch && s.depth == 1 && s.item == fiBodyValue
		s.st, s.size, s.digits = stLitSize, 0, 0
		return nil
	}
	switch b {
	case '(':
		if s.caps {
			return &BoundError{Bound: BoundCapability}
		}
		s.depth++
	case ')':
		s.depth = max(s.depth-1, 0)
	}
	if s.fetch && (s.depth == 1 || b == '(' && s.depth == 2) {
		s.fetchItem(b)
	}
	switch b {
	case '\n':
		s.st = stStart
	case '"':
		s.st = stQuoted
	}
	return nil
}

// fetchItem follows b in the top list of a FETCH response (or the "("
// that leaves it, which ends the current atom).
func (s *scanner) fetchItem(b byte) {
	switch s.item {
	case fiNone: // run took the atom octets but "["
		if b == '[' && (s.tok.is(kwBODY) || s.tok.is(kwBINARY)) {
			s.item = fiSection
		}
		s.tok = atomKey{}
	case fiSection:
		if b == ']' && s.depth == 1 {
			s.item = fiAfter
		}
	case fiAfter:
		switch {
		case b == ' ':
			s.item = fiBodyValue
		case b != '<' && b != '>' && (b < '0' || b > '9'):
			s.item, s.tok = fiNone, atomKey{}
		}
	case fiBodyValue:
		if b != '~' {
			s.item, s.tok = fiNone, atomKey{}
		}
	}
}

// litSize reads a digit of a literal's size, or what ends them.
func (s *scanner) litSize(b byte) *BoundError {
	switch {
	case b >= '0' && b <= '9':
		if s.size > (1<<63-1-9)/10 {
			return s.notLiteral(b) // go-imap fails on a size past int64
		}
		s.size = s.size*10 + int64(b-'0')
		s.digits++
		if s.body {
			if s.lim.Body > 0 && s.size > s.lim.Body {
				return &BoundError{Bound: BoundBody, Limit: s.lim.Body, Got: s.size}
			}
		} else if s.size > s.lim.Literal {
			return &BoundError{Bound: BoundLiteral, Limit: s.lim.Literal, Got: s.size}
		}
		return nil
	case b == '}' && s.digits > 0:
		s.st = stLitClose
		return nil
	case b == '+' && s.digits > 0:
		s.st = stLitPlus
		return nil
	}
	return s.notLiteral(b)
}

// notLiteral: what started as a literal's header is not one. go-imap
// fails on it; the scanner reads on as data.
func (s *scanner) notLiteral(b byte) *BoundError {
	s.st, s.item, s.tok = stData, fiNone, atomKey{}
	return s.data(b)
}

// startLiteral starts a literal after its header's line end.
func (s *scanner) startLiteral() *BoundError {
	if s.body {
		s.item = fiNone // the body ends the item
	} else {
		if s.size > s.maxOctets-s.octets {
			return s.tooLong(satAdd(s.octets, s.size))
		}
		s.octets += s.size
	}
	s.tok = atomKey{}
	s.st, s.lit = stLiteral, s.size
	if s.lit == 0 {
		s.st = stData
	}
	return nil
}
