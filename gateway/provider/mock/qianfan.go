package mock

import "net/http"

func (s *Server) serveQianfanToken(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }

func (s *Server) serveQianfan(w http.ResponseWriter, r *http.Request, c *call) { http.NotFound(w, r) }
