// Package dashboard serves the operator dashboard at /admin: a page that
// shows a Sluice cluster live (instances, rates and latencies, every
// credential's quota and breaker, client keys, the config) and steers it.
// Every action goes through the /api/ routes, with their checks. The page
// is built from the binary alone: a template and small hand-written
// script and style, embedded; no framework, no CDN.
package dashboard

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"

	"github.com/sluice-gateway/sluice/gateway/admin"
)

//go:embed assets
var assets embed.FS

// pages are the dashboard's two pages: the app, and the login.
var pages = template.Must(template.ParseFS(assets, "assets/*.html"))

// Control is what the dashboard needs of the control plane.
type Control interface {
	Login(r *http.Request, token string) (*http.Cookie, error)
	PageSession(r *http.Request) (string, bool)
	Version() string
}

// Handler serves /admin and its assets.
func Handler(ctl Control) http.Handler {
	static, _ := fs.Sub(assets, "assets")
	files := http.StripPrefix("/admin/assets/", assetServer(http.FileServerFS(static)))
	mux := http.NewServeMux()
	// The style is the login page's too; the script only a signed-in
	// operator's.
	mux.Handle("GET /admin/assets/app.css", files)
	mux.Handle("GET /admin/assets/app.js", signedIn(ctl, files))
	mux.HandleFunc("GET /admin", func(w http.ResponseWriter, r *http.Request) { page(w, r, ctl) })
	mux.HandleFunc("GET /admin/", func(w http.ResponseWriter, r *http.Request) { page(w, r, ctl) })
	mux.HandleFunc("POST /admin/login", func(w http.ResponseWriter, r *http.Request) { login(w, r, ctl) })
	mux.HandleFunc("POST /admin/logout", func(w http.ResponseWriter, r *http.Request) { logout(w, r) })
	return secure(mux)
}

// secure sets the headers every dashboard answer carries: a strict
// content security policy (only this origin's own script and style, no
// inline code), no framing, no sniffing, no referrer.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// signedIn serves next to a request with a session, and refuses others.
func signedIn(ctl Control, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := ctl.PageSession(r); !ok {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// assetServer serves the embedded script and style, cacheable briefly.
func assetServer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=300")
		next.ServeHTTP(w, r)
	})
}

// page serves the app to a logged-in operator, else the login page.
func page(w http.ResponseWriter, r *http.Request, ctl Control) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	actor, ok := ctl.PageSession(r)
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		_ = pages.ExecuteTemplate(w, "login.html", map[string]string{"Error": r.URL.Query().Get("error")})
		return
	}
	_ = pages.ExecuteTemplate(w, "app.html", map[string]string{"Actor": actor, "Version": ctl.Version()})
}

// login checks the token of the login form and sets the session cookie.
func login(w http.ResponseWriter, r *http.Request, ctl Control) {
	if !admin.SameOrigin(r) {
		http.Error(w, "cross-site login refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		http.Redirect(w, r, "/admin?error=form", http.StatusSeeOther)
		return
	}
	ck, err := ctl.Login(r, r.PostForm.Get("token"))
	switch {
	case errors.Is(err, admin.ErrBadToken):
		http.Redirect(w, r, "/admin?error=token", http.StatusSeeOther)
		return
	case err != nil:
		http.Redirect(w, r, "/admin?error=wait", http.StatusSeeOther)
		return
	}
	http.SetCookie(w, ck)
	http.Redirect(w, r, "/admin", http.StatusSeeOther)
}

// logout ends the session.
func logout(w http.ResponseWriter, r *http.Request) {
	if !admin.SameOrigin(r) {
		http.Error(w, "cross-site logout refused", http.StatusForbidden)
		return
	}
	http.SetCookie(w, admin.LogoutCookie(r))
	http.Redirect(w, r, "/admin", http.StatusSeeOther)
}
