package config

import (
	"errors"
	"fmt"
	"os"
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
