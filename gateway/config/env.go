package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrUnsetEnv is the cause of a config error about an environment
// variable that a ${VAR} reference names but the environment lacks.
var ErrUnsetEnv = errors.New("unset environment variable")

// expandEnv replaces ${VAR} and ${VAR:-default} in every scalar of the
// tree, in place. "$${" stands for a literal "${". A reference to an unset
// variable without a default is an error naming the path. Expansion
// happens after parsing, so a secret full of YAML punctuation cannot
// change the structure of the file.
func expandEnv(n *yaml.Node, path string) error {
	var errs []error
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return nil
		}
		v, err := expand(n.Value)
		if err != nil {
			return &FieldError{Path: path, Msg: err.Error(), Err: err}
		}
		// Let the decoder resolve the expanded value, quoted or not:
		// "${QPS}" may be a number, and a string field keeps the text as is.
		n.Value, n.Tag = v, ""
		n.Style &^= yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, expandEnv(n.Content[i+1], join(path, n.Content[i].Value)))
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			errs = append(errs, expandEnv(item, path+"["+strconv.Itoa(i)+"]"))
		}
	case yaml.DocumentNode:
		for _, item := range n.Content {
			errs = append(errs, expandEnv(item, path))
		}
	}
	return errors.Join(errs...)
}

// expand substitutes the references in one string.
func expand(s string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' { // "$${" is a literal "${"
			b.WriteString(s[:i])
			b.WriteString("{")
			s = s[i+2:]
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", errors.New("unterminated ${ in value")
		}
		b.WriteString(s[:i])
		ref := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(ref, ":-")
		if name == "" {
			return "", errors.New("empty ${} in value")
		}
		v, ok := os.LookupEnv(name)
		switch {
		case ok && (v != "" || !hasDef):
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("environment variable %s is not set: %w", name, ErrUnsetEnv)
		}
		s = s[i+end+1:]
	}
}

// expandTyped expands the ${ENV} references of the scalars of n that
// decode into a number, a boolean, a duration or a size (a value of type
// t), and leaves every other one as written: sluice import keeps the
// references of string values, secrets among them, in its output, but
// must resolve the others to read them. Such values are never secrets.
func expandTyped(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs []error
	switch {
	case n.Kind == yaml.ScalarNode:
		if isTyped(t) {
			return expandEnv(n, path)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if ft, ok := fields[n.Content[i].Value]; ok {
				errs = append(errs, expandTyped(n.Content[i+1], ft, join(path, n.Content[i].Value)))
			}
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, expandTyped(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)))
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i, item := range n.Content {
			errs = append(errs, expandTyped(item, t.Elem(), path+"["+strconv.Itoa(i)+"]"))
		}
	}
	return errors.Join(errs...)
}

// isTyped reports whether values of t are read as numbers, booleans,
// durations or sizes rather than kept as text.
func isTyped(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// envRef matches a ${VAR} or ${VAR:-default} reference.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// RestoreReferences puts back, in text made from a config whose ${ENV}
// references were expanded, the reference in place of each value the
// source's references expanded to (values of six bytes or more, so that
// small numbers are left alone). sluice import uses it when a reference
// sits where it had to be resolved (a URL, a port): the output still
// never shows a secret taken from the environment.
func RestoreReferences(text, source []byte) []byte {
	out := string(text)
	for _, m := range envRef.FindAllStringSubmatch(string(source), -1) {
		v, ok := os.LookupEnv(m[1])
		if !ok || len(v) < 6 {
			continue
		}
		out = strings.ReplaceAll(out, v, "${"+m[1]+"}")
	}
	return []byte(out)
}
