package mock

import "net/http"

func (s *Server) serveGoogleToken(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }

func (s *Server) serveVertex(w http.ResponseWriter, r *http.Request, c *call) { http.NotFound(w, r) }
