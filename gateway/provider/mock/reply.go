package mock

import (
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"slices"
)

// vocabulary is the fixed word list replies are drawn from. It is never
// modified.
var vocabulary = [...]string{
	"the", "gateway", "routes", "every", "request", "to", "a", "healthy",
	"upstream", "and", "streams", "tokens", "back", "while", "quotas",
	"hold", "steady", "under", "load", "with", "retries", "when", "models",
	"fail", "so", "clients", "see", "one", "calm", "answer", "from", "many",
	"providers", "latency", "stays", "low", "budgets", "are", "kept",
	"keys", "rotate", "safely", "logs", "tell", "what", "happened", "here",
	"now",
}

// promptSeed hashes what a reply depends on: the model and the messages.
func promptSeed(model string, msgs []chatMessage) uint64 {
	h := fnv.New64a()
	h.Write([]byte(model))
	for _, m := range msgs {
		h.Write([]byte{0})
		h.Write([]byte(m.Role))
		h.Write([]byte{0})
		h.Write(m.Content)
	}
	return h.Sum64()
}

// replyWords returns the n words of choice number choice of the reply
// seeded by seed.
func replyWords(seed uint64, choice, n int) []string {
	rng := rand.New(rand.NewPCG(seed, uint64(choice)))
	words := make([]string, n)
	for i := range words {
		words[i] = vocabulary[rng.IntN(len(vocabulary))]
	}
	return words
}

// sampleArguments builds tool call arguments from a function's JSON
// schema: every required property (all properties if none are required)
// gets a sample value of its type. The result is a JSON object text.
func sampleArguments(parameters json.RawMessage) string {
	var schema struct {
		Properties map[string]any `json:"properties"`
		Required   []string       `json:"required"`
	}
	_ = json.Unmarshal(parameters, &schema) // a bad schema gets "{}"
	names := schema.Required
	if len(names) == 0 {
		for name := range schema.Properties {
			names = append(names, name)
		}
		slices.Sort(names)
	}
	args := make(map[string]any, len(names))
	for _, name := range names {
		args[name] = sampleValue(schema.Properties[name])
	}
	b, err := json.Marshal(args)
	if err != nil {
		return "{}"
	}
	return string(b)
}

// sampleValue returns a value fitting a JSON schema: its first enum value
// or const, else one by type: string "sample", number or integer 1,
// boolean true, array [], object {}, null nil.
func sampleValue(schema any) any {
	m, ok := schema.(map[string]any)
	if !ok {
		return "sample"
	}
	if enum, ok := m["enum"].([]any); ok && len(enum) > 0 {
		return enum[0]
	}
	if c, ok := m["const"]; ok {
		return c
	}
	typ, _ := m["type"].(string)
	if types, ok := m["type"].([]any); ok { // e.g. ["string", "null"]
		for _, t := range types {
			if s, _ := t.(string); s != "" && s != "null" {
				typ = s
				break
			}
		}
	}
	if typ == "" {
		for _, key := range []string{"anyOf", "oneOf"} {
			if alts, ok := m[key].([]any); ok && len(alts) > 0 {
				return sampleValue(alts[0])
			}
		}
	}
	switch typ {
	case "number", "integer":
		return 1
	case "boolean":
		return true
	case "array":
		return []any{}
	case "object":
		return map[string]any{}
	case "null":
		return nil
	}
	return "sample"
}
