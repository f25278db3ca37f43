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
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Fault changes the answer to matching token calls (and business and connections/open calls). Faults are tried in the order they were set;
// the first that matches and fires applies (and uses up one of its Count).
//
// What it does, by precedence: Close, Malformed, ErrCode200, Body, then an error answer when
// Status, Code or RetryAfter is set. Latency delays the call first; a fault with only Latency
// then lets the call be answered normally.
type Fault struct {
	// Endpoint limits the fault to one token path, e.g. /v1.0/oauth2/accessToken, or a business
	// endpoint's (PathUsersMe, PathUserByUnionID, ...); "" matches all.
	Endpoint string `json:"endpoint,omitempty"`
	// Credential limits the fault to one appKey, suiteKey or clientId (on a business endpoint: the
	// one the presented token was issued to); "" matches all.
	Credential string `json:"credential,omitempty"`
	// Rate is the probability (0..1] that a matching call is affected; 0 means 1.
	Rate float64 `json:"rate,omitempty"`
	// Count limits the fault to the next Count affected calls; 0 means unlimited.
	Count int `json:"count,omitempty"`

	// Status is the HTTP status of the error answer (default 400 with Code, 429 with RetryAfter,
	// else 500), or of Body (default 200).
	Status int `json:"status,omitempty"`
	// Code is the DingTalk code of the error answer (default by status, e.g. Throttling for 429).
	Code string `json:"code,omitempty"`
	// Message is the error answer's message (default "simulated fault").
	Message string `json:"message,omitempty"`
	// RetryAfter, in seconds, sets a Retry-After header (and makes the default status 429).
	RetryAfter int `json:"retryAfter,omitempty"`
	// RetryAfterDate sends RetryAfter as an HTTP date (the simulator's clock + RetryAfter).
	RetryAfterDate bool `json:"retryAfterDate,omitempty"`
	// Latency delays the answer (the wait ends early when the caller goes away).
	Latency Duration `json:"latency,omitempty"`
	// Malformed answers HTTP 200 with a truncated JSON body.
	Malformed bool `json:"malformed,omitempty"`
	// Close drops the connection without answering.
	Close bool `json:"close,omitempty"`
	// ErrCode200 answers HTTP 200 with {"errcode": ErrCode200, "errmsg": ...}.
	ErrCode200 int `json:"errCode200,omitempty"`
	// Body answers this raw body verbatim, with Status (default 200).
	Body string `json:"body,omitempty"`
}

// Validate checks a fault's ranges and that it names a known endpoint.
func (f Fault) Validate() error {
	var errs []error
	_, token := endpoints[f.Endpoint]
	_, business := businessPaths[f.Endpoint]
	if f.Endpoint != "" && f.Endpoint != PathOpenConnection && !token && !business {
		errs = append(errs, fmt.Errorf("endpoint %q is neither a token endpoint, a business endpoint nor connections/open", f.Endpoint))
	}
	if f.Rate < 0 || f.Rate > 1 {
		errs = append(errs, errors.New("rate must be within 0..1"))
	}
	if f.Count < 0 || f.RetryAfter < 0 || f.Latency < 0 {
		errs = append(errs, errors.New("count, retryAfter and latency must not be negative"))
	}
	if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
		errs = append(errs, errors.New("status must be within 200..599"))
	}
	kinds := 0
	for _, set := range []bool{f.Close, f.Malformed, f.ErrCode200 != 0, f.Body != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		errs = append(errs, errors.New("at most one of close, malformed, errCode200 and body may be set"))
	}
	return errors.Join(errs...)
}

// answers reports whether the fault replaces the answer (rather than only delaying it).
func (f Fault) answers() bool {
	return f.Close || f.Malformed || f.ErrCode200 != 0 || f.Body != "" ||
		f.Status != 0 || f.Code != "" || f.RetryAfter != 0
}

// SetFault validates f and adds it after the faults already set.
func (s *Simulator) SetFault(f Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
	return nil
}

// ClearFaults removes every fault.
func (s *Simulator) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Faults returns the faults set, with their remaining Count.
func (s *Simulator) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Fault{}, s.faults...)
}

// takeFault returns the first fault that matches the call and fires, using up one of its Count.
func (s *Simulator) takeFault(path, credID string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.faults {
		f := &s.faults[i]
		if f.Endpoint != "" && f.Endpoint != path || f.Credential != "" && f.Credential != credID {
			continue
		}
		if f.Rate > 0 && f.Rate < 1 && rand.Float64() >= f.Rate {
			continue
		}
		fired := *f
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		return fired, true
	}
	return Fault{}, false
}

// waitLatency waits d, or until the caller goes away (then it returns false).
func waitLatency(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// serveFault writes the fault's answer, calling count with the result and HTTP status just
// before the answer leaves (so a client holding the answer finds it in the stats).
func (s *Simulator) serveFault(w http.ResponseWriter, f Fault, count func(result string, status int)) {
	switch {
	case f.Close:
		count("fault:close", 0)
		closeConnection(w)
	case f.Malformed:
		count("fault:malformed", http.StatusOK)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"accessToken":"`))
	case f.ErrCode200 != 0:
		count("fault:errcode:"+strconv.Itoa(f.ErrCode200), http.StatusOK)
		writeJSON(w, http.StatusOK, map[string]any{"errcode": f.ErrCode200, "errmsg": "simulated fault"})
	case f.Body != "":
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		count("fault:body", status)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(f.Body))
	default:
		s.serveFaultError(w, f, count)
	}
}

// serveFaultError writes a fault's DingTalk error answer (status, code, Retry-After).
func (s *Simulator) serveFaultError(w http.ResponseWriter, f Fault, count func(result string, status int)) {
	status, code, msg := f.Status, f.Code, f.Message
	switch {
	case status != 0:
	case code != "":
		status = http.StatusBadRequest
	case f.RetryAfter != 0:
		status = http.StatusTooManyRequests
	default:
		status = http.StatusInternalServerError
	}
	if code == "" {
		code = defaultCode(status)
	}
	if msg == "" {
		msg = "simulated fault"
	}
	if f.RetryAfter != 0 {
		v := strconv.Itoa(f.RetryAfter)
		if f.RetryAfterDate {
			v = s.clk.Now().Add(time.Duration(f.RetryAfter) * time.Second).UTC().Format(http.TimeFormat)
		}
		w.Header().Set("Retry-After", v)
	}
	count("fault:"+code, status)
	writeJSON(w, status, map[string]string{"requestid": w.Header().Get("x-acs-request-id"), "code": code, "message": msg})
}

// defaultCode is the code of a fault answer that names none.
func defaultCode(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "Throttling"
	case status >= 500:
		return "ServiceUnavailable"
	default:
		return "SimulatedFault"
	}
}

// closeConnection drops the connection without writing an answer.
func closeConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // HTTP/2 or no hijacking: net/http aborts the stream silently
}
