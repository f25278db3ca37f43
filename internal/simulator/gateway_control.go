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
	"errors"
	"io"
	"net/http"
)

// serveStreamControl serves the gateway's control endpoints and reports whether it did:
//
//	POST /_sim/push     push a new suite ticket now (PushRequest; an empty body pushes to every suite)
//	GET /_sim/stream    the gateway's counters (StreamStats)
//	POST /_sim/stream   a StreamAction (disconnect, drop, oversized, garbage, refuseOpen)
//
// Answers hold counts only, never a ticket.
func (s *Simulator) serveStreamControl(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method + " " + r.URL.Path {
	case "POST /_sim/push":
		var req PushRequest
		if err := decodeStrict(w, r, &req); err != nil && !errors.Is(err, io.EOF) {
			controlError(w, http.StatusBadRequest, err)
			return true
		}
		n, err := s.PushTickets(req)
		if err != nil {
			controlError(w, http.StatusBadRequest, err)
			return true
		}
		writeJSON(w, http.StatusOK, map[string]int{"pushed": n})
	case "GET /_sim/stream":
		writeJSON(w, http.StatusOK, s.StreamStats())
	case "POST /_sim/stream":
		var a StreamAction
		if err := decodeStrict(w, r, &a); err != nil {
			controlError(w, http.StatusBadRequest, err)
			return true
		}
		n, err := s.StreamAction(a)
		if err != nil {
			controlError(w, http.StatusBadRequest, err)
			return true
		}
		writeJSON(w, http.StatusOK, map[string]int{"connections": n})
	default:
		return false
	}
	return true
}
