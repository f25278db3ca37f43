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

package testenv

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSecretVolumeLayout: the directory is what the kubelet makes of a Secret volume, version
// after version: one timestamped directory behind ..data, each key a link through ..data, the
// previous directory and the keys that went away removed.
func TestSecretVolumeLayout(t *testing.T) {
	v := &SecretVolume{Dir: filepath.Join(t.TempDir(), "token")}
	read := func(key string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(v.Dir, key))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := v.WriteStrings(map[string]string{"accessToken": "one", "expiresAt": "2026-11-25T12:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	first, err := os.Readlink(filepath.Join(v.Dir, VolumeDataLink))
	if err != nil || !strings.HasPrefix(first, "..20") {
		t.Fatalf("..data -> %q (%v), want a timestamped directory", first, err)
	}
	if target, err := os.Readlink(filepath.Join(v.Dir, "accessToken")); err != nil || target != "..data/accessToken" {
		t.Errorf("accessToken -> %q (%v), want ..data/accessToken", target, err)
	}
	if got := read("accessToken"); got != "one" {
		t.Errorf("accessToken = %q", got)
	}

	if err := v.WriteStrings(map[string]string{"accessToken": "two"}); err != nil {
		t.Fatal(err)
	}
	second, _ := os.Readlink(filepath.Join(v.Dir, VolumeDataLink))
	if second == first || read("accessToken") != "two" {
		t.Errorf("after the second write: ..data -> %q (was %q), accessToken %q", second, first, read("accessToken"))
	}
	entries, err := os.ReadDir(v.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{second, VolumeDataLink, "accessToken"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q (the old version and the dropped key removed)", names, want)
	}
	if err := v.WriteStrings(map[string]string{"../x": "y"}); err == nil {
		t.Error("a key that is no file name was written")
	}
}

// TestScanOutput: the scan of a program's output finds a value and a token-shaped string, and
// refuses to scan nothing.
func TestScanOutput(t *testing.T) {
	s := &Sensitive{}
	if _, err := s.ScanOutput(map[string][]byte{"log": []byte("x")}); err == nil {
		t.Error("a scan with no values ran")
	}
	s.Add(AccessToken, "token-0123456789")
	leaks, err := s.ScanOutput(map[string][]byte{
		"clean":  []byte(`{"msg":"Proxied request","path":"/user/get"}`),
		"raw":    []byte(`{"msg":"x","v":"token-0123456789"}`),
		"shaped": []byte(`access_token=0123456789abcdef0123456789abcdef`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(leaks) != 2 || !strings.HasPrefix(leaks[0], "raw:") || !strings.HasPrefix(leaks[1], "shaped:") {
		t.Errorf("findings %q, want one in raw and one in shaped", leaks)
	}
	if _, err := s.ScanOutput(map[string][]byte{"empty": nil}); err == nil {
		t.Error("an empty source was scanned")
	}
}
