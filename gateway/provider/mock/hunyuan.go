package mock

import "net/http"

func (s *Server) serveHunyuan(w http.ResponseWriter, r *http.Request, c *call) { http.NotFound(w, r) }
