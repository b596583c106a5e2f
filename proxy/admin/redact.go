// redact.go holds Redact, which copies a configuration value with every
// secret blanked, so that GET /config can show it.

package admin

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Redacted replaces a secret string that is set.
const Redacted = "(redacted)"

// secretSuffixes are the endings of YAML key names whose values are
// secrets. Paths to secret files (client_secret_file) are not secrets.
var secretSuffixes = []string{"password", "passwd", "secret", "token", "password_hash", "api_key", "private_key"}

// Redact returns a deep copy of v in which every secret is blanked: a
// set string becomes Redacted, any other set value its zero value. A
// secret is a struct field tagged `secret:"true"`, or a struct field or
// string map key whose YAML name ends in one of secretSuffixes (password,
// secret, token, ...). Unexported fields are left zero in the copy (YAML
// and JSON ignore them); values whose type marshals itself (time.Time,
// durations with a MarshalText) are copied as they are. v itself and what
// it points to are never changed.
func Redact[T any](v T) T {
	rv := reflect.ValueOf(&v).Elem()
	out := reflect.New(rv.Type()).Elem()
	redactInto(out, rv)
	return *out.Addr().Interface().(*T)
}

var (
	yamlMarshaler = reflect.TypeFor[yaml.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
)

// marshalsItself reports whether t (or *t) has its own marshalling: its
// inside cannot be walked, and need not be.
func marshalsItself(t reflect.Type) bool {
	for _, m := range []reflect.Type{yamlMarshaler, textMarshaler, jsonMarshaler} {
		if t.Implements(m) || reflect.PointerTo(t).Implements(m) {
			return true
		}
	}
	return false
}

// redactInto copies src into dst (settable, of src's type), blanking
// secrets below it.
func redactInto(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Type().Elem())
		redactInto(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Interface:
		if src.IsNil() {
			return
		}
		e := reflect.New(src.Elem().Type()).Elem()
		redactInto(e, src.Elem())
		dst.Set(e)
	case reflect.Struct:
		if marshalsItself(src.Type()) {
			dst.Set(src)
			return
		}
		t := src.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if isSecretField(f) {
				blank(dst.Field(i), src.Field(i))
				continue
			}
			redactInto(dst.Field(i), src.Field(i))
		}
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		iter := src.MapRange()
		for iter.Next() {
			v := reflect.New(src.Type().Elem()).Elem()
			k := iter.Key()
			if k.Kind() == reflect.String && isSecretName(k.String()) {
				blank(v, iter.Value())
			} else {
				redactInto(v, iter.Value())
			}
			m.SetMapIndex(k, v)
		}
		dst.Set(m)
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			redactInto(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Array:
		for i := range src.Len() {
			redactInto(dst.Index(i), src.Index(i))
		}
	default:
		dst.Set(src)
	}
}

// blank sets dst to the redacted form of the secret src: zero stays zero
// (the reader sees the secret is unset), a string (also in an interface
// that a string satisfies, as in a map[string]any) becomes Redacted, a
// list of strings a list of as many Redacted, anything else zero.
func blank(dst, src reflect.Value) {
	if src.IsZero() {
		return
	}
	redacted := reflect.ValueOf(Redacted)
	switch {
	case src.Kind() == reflect.Interface:
		if redacted.Type().AssignableTo(dst.Type()) {
			dst.Set(redacted)
		}
	case src.Kind() == reflect.String:
		dst.SetString(Redacted)
	case src.Kind() == reflect.Slice && src.Type().Elem().Kind() == reflect.String:
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			s.Index(i).SetString(Redacted)
		}
		dst.Set(s)
	}
}

func isSecretField(f reflect.StructField) bool {
	if f.Tag.Get("secret") == "true" {
		return true
	}
	return isSecretName(yamlName(f))
}

// yamlName is the key under which yaml.v3 writes f.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// isSecretName reports whether a YAML key names a secret, or a list of
// them (old_secrets).
func isSecretName(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), "s")
	for _, s := range secretSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}
