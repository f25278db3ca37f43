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

package refreshtoken

import (
	"testing"
)

// TestNextStoreStep: a rotated refresh token is written over the refresh token it consumed, over
// itself (a write whose answer was lost) or into a deleted Secret; any other refresh token in
// the Secret is another writer's, newer: adopted, never overwritten.
func TestNextStoreStep(t *testing.T) {
	rotated := Record{RefreshToken: "r2", Consumed: "r1"}
	stored := Record{RefreshToken: "r2", Consumed: "r2", Stored: true}
	bootstrap := Record{RefreshToken: "r1"} // a first grant: nothing stored before
	tests := map[string]struct {
		rec    Record // what the operator would write
		exists bool   // whether the Secret exists
		live   string // the refresh token the Secret holds
		want   storeStep
	}{
		"the Secret holds the consumed token":         {rec: rotated, exists: true, live: "r1", want: storeWrite},
		"the Secret holds the rotated one already":    {rec: rotated, exists: true, live: "r2", want: storeWrite},
		"the Secret was deleted meanwhile":            {rec: rotated, live: "", want: storeWrite},
		"another writer stored r3 meanwhile":          {rec: rotated, exists: true, live: "r3", want: storeAdopt},
		"another writer emptied it: no token to keep": {rec: rotated, exists: true, live: "", want: storeWrite},
		"a stored record, the Secret deleted":         {rec: stored, live: "", want: storeWrite},
		"a stored record, the used list edited":       {rec: stored, exists: true, live: "r2", want: storeWrite},
		"a stored record, another token written":      {rec: stored, exists: true, live: "r9", want: storeAdopt},
		"a first grant, no Secret yet":                {rec: bootstrap, live: "", want: storeWrite},
		"a first grant, a Secret written meanwhile":   {rec: bootstrap, exists: true, live: "r7", want: storeAdopt},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := nextStoreStep(tc.rec, tc.exists, tc.live); got != tc.want {
				t.Errorf("nextStoreStep = %d, want %d", got, tc.want)
			}
		})
	}
}
