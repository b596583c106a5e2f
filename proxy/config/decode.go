package config

import (
	"bytes"
	"cmp"
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Reading the YAML file: the document is parsed into nodes first, so that
// every key path ("upstream.mailbox", "listen[0].address") has a line;
// the nodes are then checked against the schema (unknown keys with a
// suggestion, values of the wrong kind) before they are decoded strictly.
// Every message names a key path and its line, never a Go type.

// lineMap maps key paths to the line of their key in the file.
type lineMap map[string]int

// LoadConfig reads a YAML file strictly: an unknown key or a value of the
// wrong kind is an error that names its key path and line (one per line
// of the error; the caller names the file).
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(data)
}

// errEmpty is the one error of a file with no settings at all.
var errEmpty = errors.New("the file has no settings (upstream.address at least is required)")

// ParseConfig decodes a YAML document strictly, without checking values.
func ParseConfig(data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(data, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" {
		return nil, errEmpty
	}
	root := doc.Content[0]
	lines := lineMap{}
	var errs []error
	walk(root, "", reflect.TypeFor[Config](), lines, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		// walk found nothing, so this is a case it does not know.
		return nil, errors.New(goTypes.ReplaceAllString(err.Error(), "a value of another kind"))
	}
	cfg.lines = lines
	return cfg, nil
}

// goTypes matches the Go type names in a yaml.v3 decoding error.
var goTypes = regexp.MustCompile(`into \S+`)

// walk checks node against the schema type t at key path key, records the
// line of every key, and appends an error for every unknown key, repeated
// key and value of the wrong kind.
func walk(node *yaml.Node, key string, t reflect.Type, lines lineMap, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return // an empty section: zero values
	}
	bad := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s (line %d): %s", cmp.Or(key, "the file"), node.Line, fmt.Sprintf(format, args...)))
	}
	switch {
	case t.Kind() == reflect.Interface:
		return // takes anything
	case reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType):
		// A type that decodes itself: its own error says what is wrong.
		if err := node.Decode(reflect.New(t).Interface()); err != nil {
			bad("%s", strings.TrimPrefix(goTypes.ReplaceAllString(err.Error(), "a value of another kind"), "yaml: "))
		}
	case t.Kind() == reflect.Struct:
		if node.Kind != yaml.MappingNode {
			bad("must be a section of keys, not %s", describe(node))
			return
		}
		fields := yamlFields(t)
		eachKey(node, key, lines, errs, func(path string, k, v *yaml.Node) {
			f, ok := fields[k.Value]
			if !ok {
				msg := "unknown key"
				if s := suggest(k.Value, fields); s != "" {
					msg += "; did you mean " + s + "?"
				}
				*errs = append(*errs, fmt.Errorf("%s (line %d): %s", path, k.Line, msg))
				return
			}
			walk(v, path, f, lines, errs)
		})
	case t.Kind() == reflect.Map:
		if node.Kind != yaml.MappingNode {
			bad("must be a section of names, not %s", describe(node))
			return
		}
		eachKey(node, key, lines, errs, func(path string, _, v *yaml.Node) { walk(v, path, t.Elem(), lines, errs) })
	case t.Kind() == reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			bad("must be a list, not %s", describe(node))
			return
		}
		for i, v := range node.Content {
			path := fmt.Sprintf("%s[%d]", key, i)
			lines[path] = v.Line
			walk(v, path, t.Elem(), lines, errs)
		}
	default:
		if node.Kind != yaml.ScalarNode {
			bad("must be a single value, not %s", describe(node))
			return
		}
		if err := node.Decode(reflect.New(t).Interface()); err != nil {
			bad("%q is not %s", node.Value, kindOf(t))
		}
	}
}

// eachKey calls f with every key of a mapping node under key and its
// value, once: it records the key's line, and reports a key given twice.
func eachKey(node *yaml.Node, key string, lines lineMap, errs *[]error, f func(path string, k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		path := join2(key, k.Value)
		if first, dup := seen[k.Value]; dup {
			*errs = append(*errs, fmt.Errorf("%s (line %d): appears twice (first at line %d)", path, k.Line, first))
			continue
		}
		seen[k.Value] = k.Line
		lines[path] = k.Line
		f(path, k, v)
	}
}

// The types walk treats apart: durations are decoded from strings such as
// "90s", and types that decode themselves are not walked into.
var (
	durationType        = reflect.TypeFor[time.Duration]()
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// kindOf says in words what a value of t must be.
func kindOf(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration (such as 30s, 10m or 1h)"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "a whole number"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	}
	return "a text value"
}

// describe names what a node is, for "must be X, not Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func join2(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

// yamlFields maps the YAML keys of struct type t to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

// suggest returns the known key closest to name by edit distance, or ""
// when none is close enough to be a likely typo.
func suggest(name string, known map[string]reflect.Type) string {
	best, bestD := "", 0
	for k := range known {
		d := editDistance(name, k)
		if best == "" || d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(2, len(name)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// located adds the line of its key path to every "path: message" error
// of Check; a path not in the file takes the line of its nearest
// ancestor that is.
func (c *Config) located(errs []error) error {
	var out []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		msg := err.Error()
		path, rest, ok := strings.Cut(msg, ": ")
		if ok && !strings.Contains(path, " ") {
			if line := c.lines.find(path); line > 0 {
				msg = fmt.Sprintf("%s (line %d): %s", path, line, rest)
			}
		}
		out = append(out, errors.New(msg))
	}
	return errors.Join(out...)
}

// find returns the line of path or of its nearest ancestor in the file,
// or 0. "listen[0].cert_file/key_file" is looked up as its first key.
func (m lineMap) find(path string) int {
	path, _, _ = strings.Cut(path, "/")
	for path != "" {
		if line, ok := m[path]; ok {
			return line
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

// syntaxError reports a YAML syntax error at the line where it is. The
// parser names the line where the enclosing block began, so a key
// indented wrongly on line 3 of a section that begins on line 1 would be
// "line 1"; the indentation is checked here first.
func syntaxError(data []byte, err error) error {
	if line, why := badIndentation(data); line > 0 {
		return fmt.Errorf("line %d: %s", line, why)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// badIndentation finds the first line whose indentation matches no open
// block: a key less indented than its siblings but more than its parent,
// or a tab in the indentation. It knows block mappings and lists, which
// is what a config file is made of; anything else returns 0.
func badIndentation(data []byte) (int, string) {
	indents := []int{0} // the open blocks' indentations, innermost last
	opens := false      // the previous line ends with "key:" and opens a block
	for n, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if trimmed[0] == '\t' {
			return n + 1, "a tab in the indentation; indent with spaces"
		}
		if strings.HasPrefix(trimmed, "---") || strings.ContainsAny(trimmed[:1], "|>[{\"'") {
			return 0, ""
		}
		indent := len(line) - len(trimmed)
		top := indents[len(indents)-1]
		switch {
		case indent > top && opens:
			indents = append(indents, indent)
		case indent > top:
			return 0, "" // a continued value: the parser's own message is right
		default:
			for indent < indents[len(indents)-1] {
				indents = indents[:len(indents)-1]
			}
			if indent != indents[len(indents)-1] {
				key, _, _ := strings.Cut(trimmed, ":")
				return n + 1, fmt.Sprintf("%q is indented wrongly: it lines up with no enclosing section", strings.TrimPrefix(key, "- "))
			}
		}
		// A list item "- key: v" opens a block at the key's column.
		for strings.HasPrefix(trimmed, "- ") {
			trimmed = strings.TrimLeft(trimmed[2:], " ")
			indents = append(indents, len(line)-len(trimmed))
		}
		body, _, _ := strings.Cut(trimmed, " #")
		body = strings.TrimRight(body, " \r")
		opens = strings.HasSuffix(body, ":") || body == "-"
	}
	return 0, ""
}
