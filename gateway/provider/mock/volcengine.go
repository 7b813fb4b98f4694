package mock

import "net/http"

func (s *Server) serveVolcengine(w http.ResponseWriter, r *http.Request, c *call) {
	http.NotFound(w, r)
}
