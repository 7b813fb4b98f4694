package mock

import "net/http"

func (s *Server) serveDify(w http.ResponseWriter, r *http.Request, c *call) { http.NotFound(w, r) }
