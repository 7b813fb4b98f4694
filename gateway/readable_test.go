package gateway

import (
	"go/ast"
	"go/parser"
	"go/token"
	"testing"
)

// TestRequestPathIsReadable keeps the request path readable top to
// bottom: no function there is longer than 60 lines or takes more than
// five parameters.
func TestRequestPathIsReadable(t *testing.T) {
	fs := token.NewFileSet()
	for _, f := range []string{"relay.go", "admit.go", "attempt.go", "outcome.go", "stream.go", "upstream.go", "answer.go", "edge.go", "errors.go", "ingress.go", "request.go"} {
		file, err := parser.ParseFile(fs, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			lines := fs.Position(fn.End()).Line - fs.Position(fn.Pos()).Line + 1
			params := 0
			for _, p := range fn.Type.Params.List {
				params += max(1, len(p.Names))
			}
			if lines > 60 || params > 5 {
				t.Errorf("%s: %s has %d lines and %d parameters (at most 60 and 5 on the request path)", f, fn.Name.Name, lines, params)
			}
		}
	}
}
