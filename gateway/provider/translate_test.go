package provider

import (
	"io"
	"strings"
	"testing"
)

// TestStreamsClose: the translating streams can be released before their
// end (the gateway closes them when a client goes away), and a closed
// stream reports no more chunks.
func TestStreamsClose(t *testing.T) {
	for _, tr := range []Translator{claude{}, gemini{}, qianfan{}, hunyuan{}, vertex{}, dify{}, dashScope{}} {
		s := tr.Stream(strings.NewReader(translateSeeds[6]+translateSeeds[7]), "m")
		c, ok := s.(io.Closer)
		if !ok {
			t.Fatalf("%s stream has no Close", tr.Format())
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if chunk, err := s.Next(); err == nil {
			t.Fatalf("%s: chunk %s after Close", tr.Format(), chunk)
		}
	}
}
