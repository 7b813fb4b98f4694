// Package redact removes secrets from text before it leaves Sluice: an
// upstream's error body, a stream's error event, a log line, a span's
// status, a CLI's output. A Redactor is built once from every secret of a
// config and finds them in whatever form they come back:
//
//   - as written, or escaped as JSON ("\u002d" for "-") or for a URL
//     ("%2D"), even escaped twice (JSON inside a JSON string);
//   - encoded in base64 (an echoed Basic authorization);
//   - partly: a prefix and a suffix around a mask ("sk-up…6789",
//     "sk-pro****6789"), or a long enough piece of the secret (a
//     truncated echo).
//
// Every match is replaced by "[redacted]". A nil *Redactor redacts
// nothing.
package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"
)

// Mask replaces each secret found.
const Mask = "[redacted]"

// minSecret is the shortest secret looked for: shorter values ("test",
// "1") would redact ordinary words.
const minSecret = 6

// minPartial is the shortest secret whose pieces are looked for too.
const minPartial = 12

// Redactor finds the secrets it was built from. It is immutable and safe
// for concurrent use.
type Redactor struct {
	secrets []secret
	// grams indexes every gramLen-byte run of every form of every
	// secret, so that text is scanned once whatever the number of
	// secrets.
	grams map[string][]gramRef
	short []int // secrets shorter than gramLen, searched for directly
}

// gramLen is the length of the runs the index holds.
const gramLen = 8

// gramRef is where a run occurs: in which form of which secret, at which
// byte.
type gramRef struct{ secret, form, pos int }

// secret is one value to hide, with the forms searched for it.
type secret struct {
	value string
	forms []string // value, then its base64 encodings (which escaping does not undo)
	piece int      // the shortest run of value that counts as a leak; 0: only all of it
}

// New returns a Redactor for secrets. Empty and short values (under six
// bytes) are ignored; duplicates are kept once.
func New(secrets ...string) *Redactor {
	r := &Redactor{grams: map[string][]gramRef{}}
	seen := map[string]bool{}
	for _, s := range secrets {
		if len(s) < minSecret || seen[s] {
			continue
		}
		seen[s] = true
		sc := secret{value: s, forms: append([]string{s}, base64Forms(s)...)}
		if len(s) >= minPartial {
			sc.piece = max(gramLen, min(12, len(s)*2/3))
		}
		i := len(r.secrets)
		r.secrets = append(r.secrets, sc)
		if len(s) < gramLen {
			r.short = append(r.short, i)
		}
		for f, form := range sc.forms {
			for pos := 0; pos+gramLen <= len(form); pos++ {
				g := form[pos : pos+gramLen]
				r.grams[g] = append(r.grams[g], gramRef{secret: i, form: f, pos: pos})
			}
		}
	}
	return r
}

// Empty reports whether r looks for nothing.
func (r *Redactor) Empty() bool { return r == nil || len(r.secrets) == 0 }

// base64Forms returns the parts of the base64 encodings of s (standard and
// URL alphabets, at each of the three byte alignments) that do not depend
// on the bytes around s: any base64 text that embeds s contains one.
func base64Forms(s string) []string {
	var out []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for pad := 0; pad < 3; pad++ {
			e := enc.EncodeToString(append(make([]byte, pad), s...))
			// Characters covering the padding bytes, and the last group
			// (which depends on what follows s), vary.
			start := (pad*8 + 5) / 6
			end := ((pad + len(s)) * 8) / 6
			if end-start >= minSecret {
				out = append(out, e[start:end])
			}
		}
	}
	return out
}

// String returns s with every secret replaced by Mask.
func (r *Redactor) String(s string) string {
	if r.Empty() || s == "" {
		return s
	}
	spans := r.find(s)
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.start])
		b.WriteString(Mask)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// Bytes returns b with every secret replaced by Mask (b itself when there
// is none).
func (r *Redactor) Bytes(b []byte) []byte {
	if r.Empty() || len(b) == 0 {
		return b
	}
	s := string(b)
	if out := r.String(s); out != s {
		return []byte(out)
	}
	return b
}

// JSON returns a JSON document with every secret removed from its strings
// (keys included), decoded first so that no escaping hides one, and
// encoded again only when something was removed. Text that is not JSON is
// redacted as text.
func (r *Redactor) JSON(b []byte) []byte {
	if r.Empty() || len(b) == 0 {
		return b
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return r.Bytes(b)
	}
	out, changed := r.value(v)
	if !changed {
		// Decoded, nothing was found; the raw bytes are checked too (a
		// secret split across strings is not a concern, but a malformed
		// tail after the document is).
		return r.Bytes(b)
	}
	enc, err := marshal(out)
	if err != nil {
		return r.Bytes(b)
	}
	return enc
}

// value redacts the strings of a decoded JSON value.
func (r *Redactor) value(v any) (any, bool) {
	switch t := v.(type) {
	case string:
		out := r.String(t)
		return out, out != t
	case []any:
		changed := false
		for i, item := range t {
			var c bool
			t[i], c = r.value(item)
			changed = changed || c
		}
		return t, changed
	case map[string]any:
		changed := false
		out := make(map[string]any, len(t))
		for k, item := range t {
			nk := r.String(k)
			nv, c := r.value(item)
			out[nk] = nv
			changed = changed || c || nk != k
		}
		return out, changed
	}
	return v, false
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// span is a range of the original text to mask.
type span struct{ start, end int }

// find returns the ranges of s that hold a secret, sorted and merged.
func (r *Redactor) find(s string) []span {
	var spans []span
	text := decoded{s: s, orig: nil}
	// Escaped text is decoded up to three times (JSON in a JSON string in
	// a URL): each round's matches are mapped back to s.
	for round := 0; round < 3; round++ {
		for _, m := range r.match(text.s) {
			spans = append(spans, text.source(m))
		}
		next, changed := text.decode()
		if !changed {
			break
		}
		text = next
	}
	return merge(spans)
}

// match finds the secrets in plain (already decoded) text.
func (r *Redactor) match(t string) []span {
	var out []span
	for i := 0; i+gramLen <= len(t); i++ {
		refs := r.grams[t[i:i+gramLen]]
		end := 0
		for _, ref := range refs {
			sc := r.secrets[ref.secret]
			form := sc.forms[ref.form]
			// Extend the run both ways as far as it matches the form.
			a, b := i, i+gramLen
			for a > 0 && ref.pos-(i-a) > 0 && t[a-1] == form[ref.pos-(i-a)-1] {
				a--
			}
			for b < len(t) && ref.pos+(b-i) < len(form) && t[b] == form[ref.pos+(b-i)] {
				b++
			}
			whole := b-a == len(form)
			if whole || ref.form == 0 && sc.piece > 0 && b-a >= sc.piece {
				out = append(out, span{a, b})
				end = max(end, b)
			}
		}
		if end > 0 {
			i = max(i, end-gramLen) // the next run starts past this match
		}
	}
	for _, k := range r.short {
		v := r.secrets[k].value
		for i := 0; ; {
			j := strings.Index(t[i:], v)
			if j < 0 {
				break
			}
			out = append(out, span{i + j, i + j + len(v)})
			i += j + len(v)
		}
	}
	return append(out, r.masked(t)...)
}

// isMask reports the characters services write in place of a secret's
// middle ("sk-ab…6789", "sk-ab****6789", "sk-ab...6789").
func isMask(r rune) bool { return r == '*' || r == '…' || r == '•' || r == '.' || r == '·' }

// maxMaskRuns bounds the mask runs examined in one text, so that text
// full of dots costs no more than a bounded amount of work per secret.
const maxMaskRuns = 4096

// masked finds a prefix and a suffix of a secret around a mask, or one of
// them beside a mask: "sk-up…6789", "sk-upstr****", "****6789".
func (r *Redactor) masked(t string) []span {
	if !strings.ContainsAny(t, "*.\u2026\u2022\u00b7") {
		return nil
	}
	var out []span
	runs := 0
	for i := 0; i < len(t) && runs < maxMaskRuns; {
		c, n := utf8.DecodeRuneInString(t[i:])
		if !isMask(c) {
			i += n
			continue
		}
		start, dots := i, 0
		for i < len(t) {
			c, n := utf8.DecodeRuneInString(t[i:])
			if !isMask(c) {
				break
			}
			if c == '.' {
				dots++
			}
			i += n
		}
		end := i
		if dots == end-start && dots < 2 {
			continue // one full stop ends a sentence; it masks nothing
		}
		runs++
		for _, sc := range r.secrets {
			if sc.piece == 0 {
				continue
			}
			p := commonSuffixPrefix(t[:start], sc.value) // the secret's prefix, just before the mask
			s := commonPrefixSuffix(t[end:], sc.value)   // the secret's suffix, just after it
			switch {
			case p >= 2 && s >= 2 && p+s >= 6, p >= 6, s >= 4:
				out = append(out, span{start - p, end + s})
			}
		}
	}
	return out
}

// commonSuffixPrefix is the length of the longest prefix of secret that
// text ends with.
func commonSuffixPrefix(text, secret string) int {
	for n := min(len(text), len(secret)-1); n > 0; n-- {
		if strings.HasSuffix(text, secret[:n]) {
			return n
		}
	}
	return 0
}

// commonPrefixSuffix is the length of the longest suffix of secret that
// text starts with.
func commonPrefixSuffix(text, secret string) int {
	for n := min(len(text), len(secret)-1); n > 0; n-- {
		if strings.HasPrefix(text, secret[len(secret)-n:]) {
			return n
		}
	}
	return 0
}

// merge sorts spans and joins those that overlap or touch.
func merge(spans []span) []span {
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	out := spans[:1]
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if sp.start <= last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		out = append(out, sp)
	}
	return out
}

// decoded is text after some rounds of unescaping, with where each of its
// bytes came from in the original text (nil: nowhere else, it is the
// original).
type decoded struct {
	s    string
	orig []span
}

// source maps a span of the decoded text back to the original.
func (d decoded) source(sp span) span {
	if d.orig == nil {
		return sp
	}
	return span{d.orig[sp.start].start, d.orig[sp.end-1].end}
}

// decode undoes one round of JSON string escapes (\u002d, \/, \"), URL
// escapes (%2D) and HTML numeric entities (&#45;). changed is false when
// there was nothing to undo.
func (d decoded) decode() (decoded, bool) {
	s := d.s
	if !strings.ContainsAny(s, `\%&`) {
		return d, false
	}
	var b strings.Builder
	orig := make([]span, 0, len(s))
	emit := func(out string, from, to int) {
		src := d.source(span{from, to})
		b.WriteString(out)
		for range len(out) {
			orig = append(orig, src)
		}
	}
	changed := false
	for i := 0; i < len(s); {
		if out, n := unescape(s[i:]); n > 0 {
			emit(out, i, i+n)
			i += n
			changed = true
			continue
		}
		emit(s[i:i+1], i, i+1)
		i++
	}
	if !changed {
		return d, false
	}
	return decoded{s: b.String(), orig: orig}, true
}

// unescape decodes the escape at the start of s, returning the text it
// stands for and its length (0 when s does not start with one).
func unescape(s string) (string, int) {
	switch {
	case len(s) >= 6 && s[0] == '\\' && s[1] == 'u':
		r, ok := hex(s[2:6])
		if !ok {
			return "", 0
		}
		if utf16Surrogate(r) && len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
			if lo, ok := hex(s[8:12]); ok {
				return string(combine(r, lo)), 12
			}
		}
		return string(rune(r)), 6
	case len(s) >= 2 && s[0] == '\\':
		if c, ok := simpleEscapes[s[1]]; ok {
			return c, 2
		}
	case len(s) >= 3 && s[0] == '%':
		if v, ok := hex(s[1:3]); ok {
			return string([]byte{byte(v)}), 3
		}
	case len(s) >= 4 && s[0] == '&' && s[1] == '#':
		end := strings.IndexByte(s[:min(len(s), 10)], ';')
		if end < 3 {
			return "", 0
		}
		var v int
		var ok bool
		if s[2] == 'x' || s[2] == 'X' {
			v, ok = hex(s[3:end])
		} else {
			v, ok = decimal(s[2:end])
		}
		if ok && v > 0 && v <= utf8.MaxRune {
			return string(rune(v)), end + 1
		}
	}
	return "", 0
}

var simpleEscapes = map[byte]string{'"': `"`, '\\': `\`, '/': "/", 'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t"}

func hex(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			v = v*16 + int(c-'0')
		case c >= 'a' && c <= 'f':
			v = v*16 + int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			v = v*16 + int(c-'A') + 10
		default:
			return 0, false
		}
	}
	return v, true
}

func decimal(s string) (int, bool) {
	if s == "" || len(s) > 7 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	return v, true
}

func utf16Surrogate(r int) bool { return r >= 0xd800 && r < 0xdc00 }

func combine(hi, lo int) rune {
	if lo < 0xdc00 || lo >= 0xe000 {
		return utf8.RuneError
	}
	return rune((hi-0xd800)<<10 | (lo - 0xdc00) + 0x10000)
}
