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

package plugin

import (
	"fmt"
	"time"
)

// humanDuration renders d for a person: the two largest units, rounded down ("1h59m", "3m20s",
// "45s", "2d4h"). Negative durations render as their absolute value; the caller says "ago".
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	d = d.Truncate(time.Second)
	days := d / (24 * time.Hour)
	hours := (d % (24 * time.Hour)) / time.Hour
	minutes := (d % time.Hour) / time.Minute
	seconds := (d % time.Minute) / time.Second
	switch {
	case days > 0 && hours > 0:
		return fmt.Sprintf("%dd%dh", days, hours)
	case days > 0:
		return fmt.Sprintf("%dd", days)
	case hours > 0 && minutes > 0:
		return fmt.Sprintf("%dh%dm", hours, minutes)
	case hours > 0:
		return fmt.Sprintf("%dh", hours)
	case minutes > 0 && seconds > 0:
		return fmt.Sprintf("%dm%ds", minutes, seconds)
	case minutes > 0:
		return fmt.Sprintf("%dm", minutes)
	default:
		return fmt.Sprintf("%ds", seconds)
	}
}

// relative says when t is, seen from now: "in 1h59m", "3m20s ago" or "now".
func relative(t, now time.Time) string {
	d := t.Sub(now).Truncate(time.Second)
	switch {
	case d == 0:
		return "now"
	case d > 0:
		return "in " + humanDuration(d)
	default:
		return humanDuration(d) + " ago"
	}
}

// stamp renders t in UTC, RFC 3339 (as the status and the target Secret show it).
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
