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

package policy

import (
	"testing"
	"time"
)

// TestRefreshRequestedAt: the refresh-requested-at annotation's value as a request time, or why
// it is ignored.
func TestRefreshRequestedAt(t *testing.T) {
	now := t0.Add(500 * time.Millisecond)
	tests := map[string]struct {
		value   string    // the annotation
		want    time.Time // the request time (zero: none)
		ignored string    // why it is ignored ("": it is not)
	}{
		"none":               {},
		"a time in the past": {value: "2026-11-25T11:00:00Z", want: t0.Add(-time.Hour)},
		"a fraction rounds up to the next second": {value: "2026-11-25T12:00:00.100Z", want: t0.Add(time.Second)},
		"a few seconds ahead is kept as it is":    {value: "2026-11-25T12:00:30Z", want: t0.Add(30 * time.Second)},
		"more than a minute ahead: ignored":       {value: "2026-11-25T12:05:00Z", ignored: "lies in the future"},
		"not a time: ignored":                     {value: "now please", ignored: "is not an RFC 3339 time such as 2026-11-25T14:50:12Z"},
		"a date without a time: ignored":          {value: "2026-11-25", ignored: "is not an RFC 3339 time such as 2026-11-25T14:50:12Z"},
		"another zone is the same instant":        {value: "2026-11-25T20:00:00+08:00", want: t0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ignored := RequestedAt(tc.value, now)
			if !got.Equal(tc.want) || ignored != tc.ignored {
				t.Errorf("RequestedAt(%q) = %s, %q; want %s, %q", tc.value, got, ignored, tc.want, tc.ignored)
			}
		})
	}
}
