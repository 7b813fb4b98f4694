package mock

import "net/http"

// modelsCreated is the "created" time of every listed model.
const modelsCreated = 1700000000

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// serveModels answers GET …/models with Config.Models.
func (s *Server) serveModels(w http.ResponseWriter) {
	list := modelList{Object: "list", Data: make([]model, len(s.conf().Models))}
	for i, id := range s.conf().Models {
		list.Data[i] = model{ID: id, Object: "model", Created: modelsCreated, OwnedBy: "sluice-mock"}
	}
	writeJSON(w, http.StatusOK, list)
}
