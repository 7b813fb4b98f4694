package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

const key = "sk-upstream-0123456789abcdef6789"

func TestStringFindsEveryForm(t *testing.T) {
	r := New(key, "app-secret-xyz", "short")
	jsonEscaped := strings.ReplaceAll(key, "-", `\u002d`)
	tests := []struct {
		name, in string
	}{
		{"plain", "invalid key " + key + " given"},
		{"json escaped", `{"message":"invalid key ` + jsonEscaped + `"}`},
		{"json escaped, upper hex", strings.ReplaceAll(key, "-", `\u002D`)},
		{"json escaped twice", strings.ReplaceAll(key, "-", `\\u002d`)},
		{"url encoded", "https://x/?api_key=" + url.QueryEscape(key+"/+")},
		{"url encoded every byte", percentAll(key)},
		{"html entities", strings.ReplaceAll(key, "-", "&#45;")},
		{"base64 basic auth", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+key))},
		{"base64 url alphabet", base64.URLEncoding.EncodeToString([]byte("xx" + key + "yy"))},
		{"prefix and suffix around an ellipsis", "Incorrect API key provided: sk-up…6789."},
		{"around three dots", "key sk-ups...6789 is wrong"},
		{"around stars", "key sk-upstr**********************6789 is wrong"},
		{"masked suffix only", "key ****************6789 is wrong"},
		{"truncated echo", "key " + key[:16] + " (truncated)"},
		{"piece from the middle", "x" + key[5:20] + "y"},
		{"second secret", "app-secret-xyz leaked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := r.String(tt.in)
			if !strings.Contains(out, Mask) {
				t.Fatalf("nothing redacted in %q: %q", tt.in, out)
			}
			for _, leak := range []string{key, key[:12], key[len(key)-10:], "app-secret-xyz", "6789"} {
				if strings.Contains(out, leak) {
					t.Fatalf("%q still holds %q: %q", tt.in, leak, out)
				}
			}
		})
	}
}

func percentAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteString("%" + strings.ToUpper(hexByte(s[i])))
	}
	return b.String()
}

func hexByte(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

func TestStringLeavesOrdinaryTextAlone(t *testing.T) {
	r := New(key, "short", "tiny1")
	for _, in := range []string{
		"",
		"The model is overloaded. Try again later.",
		"rate limit reached... retry after 2s",
		"short names are not secrets", // under six bytes: ignored
		"sk-abc is a prefix every key shares",
		"12345 and 6789 alone are not the key",
		"Error 500... **** ...",
	} {
		if out := r.String(in); out != in {
			t.Errorf("%q changed to %q", in, out)
		}
	}
	var nilR *Redactor
	if nilR.String(key) != key || !nilR.Empty() || New().String(key) != key {
		t.Fatal("a nil or empty Redactor must change nothing")
	}
}

func TestJSONRedactsDecodedStringsAndKeepsTheShape(t *testing.T) {
	r := New(key)
	in := []byte(`{"error":{"message":"bad key ` + strings.ReplaceAll(key, "-", `\u002d`) + `","type":"invalid_request_error","code":null,"n":1.50},"` + key + `":true}`)
	out := r.JSON(in)
	if strings.Contains(string(out), "0123456789") || strings.Contains(string(out), `\u002d`+"upstream") {
		t.Fatalf("not redacted: %s", out)
	}
	var v struct {
		Error struct {
			Message string
			Type    string
			Code    *string
			N       json.Number
		}
	}
	if err := json.Unmarshal(out, &v); err != nil || v.Error.Type != "invalid_request_error" || v.Error.N != "1.50" ||
		v.Error.Message != "bad key "+Mask {
		t.Fatalf("shape lost: %s (%v)", out, err)
	}
	clean := []byte(`{"error":{"message":"fine"}}`)
	if got := r.JSON(clean); string(got) != string(clean) {
		t.Fatalf("a clean body must come back as it was: %s", got)
	}
	if got := r.JSON([]byte("<html>" + key + "</html>")); strings.Contains(string(got), key) {
		t.Fatalf("text that is not JSON is redacted as text: %s", got)
	}
}

func TestBytesKeepsCleanInput(t *testing.T) {
	r := New(key)
	in := []byte("nothing here")
	if out := r.Bytes(in); &out[0] != &in[0] {
		t.Fatal("clean input should be returned as is")
	}
	if out := r.Bytes([]byte("k=" + key)); string(out) != "k="+Mask {
		t.Fatalf("got %q", out)
	}
}

func FuzzString(f *testing.F) {
	r := New(key, "app-secret-xyz")
	for _, s := range []string{"", key, `\u00`, "%", "&#", "&#x;", "…", "sk-up…6789", `\ud83d\ude00`, "***6789"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := r.String(s + key + s)
		if strings.Contains(out, key) {
			t.Fatalf("the key survived in %q", out)
		}
		_ = r.JSON([]byte(s))
	})
}

func BenchmarkStringClean(b *testing.B) {
	var secrets []string
	for i := range 100 {
		secrets = append(secrets, "sk-proj-"+strings.Repeat(string(rune('a'+i%26)), 40)+hexByte(byte(i)))
	}
	r := New(secrets...)
	msg := "The upstream answered 500: internal server error, please retry later (request id abc123)."
	b.ReportAllocs()
	for b.Loop() {
		_ = r.String(msg)
	}
}
