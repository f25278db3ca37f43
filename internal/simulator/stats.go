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

import "maps"

// UnknownCredential is the Stats key of calls naming no configured credential.
const UnknownCredential = "(unknown)"

// Counts counts calls in total and per result: "success", the DingTalk code answered (e.g.
// "invalidSuiteTicket"), "fault:<kind or code>", or "canceled" when the caller left during a latency fault.
type Counts struct {
	Total   int64            `json:"total"`
	Results map[string]int64 `json:"results"`
}

// EndpointStats counts the calls of one endpoint, also per credential id (appKey, suiteKey or
// clientId of a configured credential, else UnknownCredential). Never a secret.
type EndpointStats struct {
	Counts
	Credentials map[string]Counts `json:"credentials,omitempty"`
}

// Stats counts every call since the start or the last ResetStats, per endpoint path ("other" for
// any other path).
type Stats struct {
	Counts
	Endpoints map[string]EndpointStats `json:"endpoints"`
}

func newCounts() Counts { return Counts{Results: map[string]int64{}} }

func newStats() Stats { return Stats{Counts: newCounts(), Endpoints: map[string]EndpointStats{}} }

func (c *Counts) add(result string) {
	c.Total++
	c.Results[result]++
}

func (c Counts) clone() Counts { return Counts{Total: c.Total, Results: maps.Clone(c.Results)} }

// record counts one call; the caller holds the simulator's lock.
func (st *Stats) record(path, credID, result string) {
	st.add(result)
	ep, ok := st.Endpoints[path]
	if !ok {
		ep = EndpointStats{Counts: newCounts()}
	}
	ep.add(result)
	if path != endpointOther {
		if credID == "" {
			credID = UnknownCredential
		}
		if ep.Credentials == nil {
			ep.Credentials = map[string]Counts{}
		}
		c, ok := ep.Credentials[credID]
		if !ok {
			c = newCounts()
		}
		c.add(result)
		ep.Credentials[credID] = c
	}
	st.Endpoints[path] = ep
}

func (st Stats) clone() Stats {
	out := Stats{Counts: st.Counts.clone(), Endpoints: make(map[string]EndpointStats, len(st.Endpoints))}
	for path, ep := range st.Endpoints {
		cp := EndpointStats{Counts: ep.Counts.clone()}
		if ep.Credentials != nil {
			cp.Credentials = make(map[string]Counts, len(ep.Credentials))
			for id, c := range ep.Credentials {
				cp.Credentials[id] = c.clone()
			}
		}
		out.Endpoints[path] = cp
	}
	return out
}

// Stats returns a copy of the call counters.
func (s *Simulator) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.clone()
}

// ResetStats sets every counter back to zero.
func (s *Simulator) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = newStats()
}
