/*
Copyright 2026 The dingtalk-token-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package simulator

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// maxControlBytes caps a /_sim/ request body.
const maxControlBytes = 1 << 20

// ValidateRequest is the body of POST /_sim/validate.
type ValidateRequest struct {
	AccessToken string `json:"accessToken"`
}

// ValidateAnswer is the answer of POST /_sim/validate. ExpiresAt is set when Valid.
type ValidateAnswer struct {
	Valid     bool       `json:"valid"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// serveControl serves the control endpoints:
//
//	GET /_sim/faults        the faults set, as a JSON array of Fault
//	POST /_sim/faults       add one Fault (JSON); 201
//	DELETE /_sim/faults     remove every fault; 204
//	GET /_sim/stats         the call counters (Stats)
//	DELETE /_sim/stats      reset them; 204
//	POST /_sim/validate     ValidateRequest -> ValidateAnswer
//	POST /_sim/credentials  add apps, suites and users: a Config document in JSON or YAML; 204
//
// and the Stream gateway's (serveStreamControl).
func (s *Simulator) serveControl(w http.ResponseWriter, r *http.Request) {
	switch route := r.Method + " " + r.URL.Path; route {
	case "GET /_sim/faults":
		writeJSON(w, http.StatusOK, s.Faults())
	case "POST /_sim/faults":
		var f Fault
		if err := decodeStrict(w, r, &f); err != nil {
			controlError(w, http.StatusBadRequest, err)
			return
		}
		if err := s.SetFault(f); err != nil {
			controlError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusCreated, f)
	case "DELETE /_sim/faults":
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case "GET /_sim/stats":
		writeJSON(w, http.StatusOK, s.Stats())
	case "DELETE /_sim/stats":
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	case "POST /_sim/validate":
		var req ValidateRequest
		if err := decodeStrict(w, r, &req); err != nil {
			controlError(w, http.StatusBadRequest, err)
			return
		}
		ans := ValidateAnswer{}
		if ok, exp := s.validate(req.AccessToken); ok {
			exp = exp.UTC()
			ans = ValidateAnswer{Valid: true, ExpiresAt: &exp}
		}
		writeJSON(w, http.StatusOK, ans)
	case "POST /_sim/credentials":
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBytes))
		if err != nil {
			controlError(w, http.StatusBadRequest, errors.New("body too large or unreadable"))
			return
		}
		cfg, err := ParseConfig(b)
		if err == nil {
			err = s.AddCredentials(cfg)
		}
		if err != nil {
			controlError(w, http.StatusBadRequest, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		if s.serveStreamControl(w, r) {
			return
		}
		controlError(w, http.StatusNotFound, errors.New("no such control endpoint or method"))
	}
}

// decodeStrict reads one JSON value into v, refusing unknown fields.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBytes))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func controlError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
