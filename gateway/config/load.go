package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Format is the dialect a config file is written in.
type Format string

// Formats Sluice reads. Every one is detected from the file's content.
const (
	FormatNative       Format = "sluice"
	FormatSimpleOneAPI Format = "simple-one-api"
	FormatAILoad       Format = "aiload"
	FormatChannels     Format = "channels-yaml"
)

// Load reads a config file in any supported format, fills in defaults and
// validates it. The error lists every problem found, one per line.
func Load(path string) (*Config, Format, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	cfg, format, err := Parse(data)
	if err != nil {
		return nil, format, err
	}
	if err := readCredentialFiles(cfg, filepath.Dir(path)); err != nil {
		return nil, format, err
	}
	ApplyRedisURL(cfg, os.Getenv("REDIS_URL"))
	ApplyAdminToken(cfg, os.Getenv("SLUICE_ADMIN_TOKEN"))
	cfg.Provision()
	if err := cfg.Validate(); err != nil {
		return nil, format, err
	}
	return cfg, format, nil
}

// readCredentialFiles reads the key files credentials name
// (credentials_file, a vertexai service account's JSON key) into their
// keys. A relative path is relative to dir, the config file's directory.
func readCredentialFiles(cfg *Config, dir string) error {
	var errs []error
	for i, ch := range cfg.Channels {
		for j := range ch.Credentials {
			cr := &cfg.Channels[i].Credentials[j]
			if cr.CredentialsFile == "" {
				continue
			}
			path := fmt.Sprintf("channels[%d].credentials[%d]", i, j)
			if cr.Key != "" {
				errs = append(errs, &FieldError{Path: path + ".credentials_file", Msg: "give the key or credentials_file, not both"})
				continue
			}
			file := cr.CredentialsFile
			if !filepath.IsAbs(file) {
				file = filepath.Join(dir, file)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				errs = append(errs, &FieldError{Path: path + ".credentials_file", Msg: "cannot read it: " + err.Error()})
				continue
			}
			cr.Key = string(data)
		}
	}
	return errors.Join(errs...)
}

// ApplyAdminToken turns the control plane on with token (the
// SLUICE_ADMIN_TOKEN environment variable) when the config gives none.
func ApplyAdminToken(cfg *Config, token string) {
	if token != "" && cfg.Admin.Token == "" {
		cfg.Admin.Token = token
	}
}

// ApplyRedisURL makes a config shared through the Redis at url (the
// REDIS_URL environment variable), in any format: it adds a redis section
// if there is none, and fills in its address if it has none.
func ApplyRedisURL(cfg *Config, url string) {
	if url == "" {
		return
	}
	if cfg.Redis == nil {
		cfg.Redis = &Redis{}
	}
	if cfg.Redis.URL == "" && len(cfg.Redis.Addrs) == 0 {
		cfg.Redis.URL = url
	}
}

// Parse decodes a config in any supported format (YAML or JSON) into the
// native model, expanding ${ENV} references in string values. It does not
// fill defaults or validate.
func Parse(data []byte) (*Config, Format, error) { return parse(data, true) }

// ParseKeepEnv is Parse without ${ENV} expansion: references stay in the
// values as written, so a converted config keeps its secrets out of the
// file (sluice import).
func ParseKeepEnv(data []byte) (*Config, Format, error) { return parse(data, false) }

func parse(data []byte, expand bool) (*Config, Format, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, "", fmt.Errorf("parse config: %w", err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, "", errors.New("parse config: the file is empty")
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, "", errors.New("parse config: the top level must be a mapping (object)")
	}
	if expand {
		if err := expandEnv(doc, ""); err != nil {
			return nil, "", err
		}
	}
	format := detect(doc)
	r := &peerReader{keepEnv: !expand}
	var cfg *Config
	var err error
	switch format {
	case FormatSimpleOneAPI:
		cfg, err = fromSimpleOneAPI(r, doc)
	case FormatAILoad:
		cfg, err = fromAILoad(r, doc)
	case FormatChannels:
		cfg, err = fromChannels(r, doc)
	default:
		cfg, err = decodeStrict[Config](doc, !expand)
	}
	if err != nil {
		return nil, format, err
	}
	return cfg, format, nil
}

// detect tells the dialect of a parsed config from its keys.
func detect(doc *yaml.Node) Format {
	switch {
	case mapValue(doc, "services") != nil:
		return FormatSimpleOneAPI
	case mapValue(doc, "auth_token") != nil,
		mapValue(doc, "models") != nil && mapValue(doc, "channels") == nil:
		return FormatAILoad
	}
	if chans := mapValue(doc, "channels"); chans != nil && chans.Kind == yaml.SequenceNode {
		for _, ch := range chans.Content {
			for _, k := range []string{"baseUrl", "apiKey", "apiKeys", "maxRetries", "modelParams"} {
				if mapValue(ch, k) != nil {
					return FormatChannels
				}
			}
		}
	}
	return FormatNative
}

// mapValue returns the value of key in a mapping node, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// decodeStrict decodes n into a T, first rejecting keys T does not have,
// each named by its path. Top-level keys starting with "x-" are ignored,
// so that a file can keep YAML anchors there (as docker compose files do).
// With keepEnv, the ${ENV} references of values that are not text are
// expanded (the others were left as written).
func decodeStrict[T any](n *yaml.Node, keepEnv bool) (*T, error) {
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !strings.HasPrefix(n.Content[i].Value, "x-") {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
	}
	if errs := unknownFields(n, reflect.TypeFor[T](), ""); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if keepEnv {
		if err := expandTyped(n, reflect.TypeFor[T](), ""); err != nil {
			return nil, err
		}
	}
	v := new(T)
	if err := n.Decode(v); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	return v, nil
}

// unknownFields walks a node against a Go type and reports mapping keys
// that have no field.
func unknownFields(n *yaml.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(reflect.TypeFor[yaml.Unmarshaler]()) || reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return nil
	}
	var errs []error
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if key == "<<" { // a YAML merge key: its fields are checked where they are defined
				continue
			}
			ft, ok := fields[key]
			if !ok {
				errs = append(errs, &FieldError{Path: join(path, key), Msg: fmt.Sprintf("unknown field (line %d)", n.Content[i].Line)})
				continue
			}
			errs = append(errs, unknownFields(n.Content[i+1], ft, join(path, key))...)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, unknownFields(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i, item := range n.Content {
			errs = append(errs, unknownFields(item, t.Elem(), path+"["+strconv.Itoa(i)+"]")...)
		}
	}
	return errs
}

// yamlFields maps the yaml names of a struct's fields to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type)
	for f := range t.Fields() {
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

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Marshal writes cfg in the native YAML format.
func Marshal(cfg *Config) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}
