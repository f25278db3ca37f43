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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The names the kubelet gives the parts of a mounted Secret volume.
const (
	// VolumeDataLink is the symlink to the current timestamped directory.
	VolumeDataLink = "..data"
	// volumeDataTmp is the new link, renamed over VolumeDataLink.
	volumeDataTmp = "..data_tmp"
)

// SecretVolume writes a directory the way the kubelet writes a mounted Secret volume (its
// AtomicWriter): each version of the data goes into a new timestamped directory
// (..2026_11_25_12_00_00.123456789), a symlink ..data_tmp to it is renamed over ..data
// (atomically), each key is a symlink key -> ..data/key, and then the previous directory and the
// keys that went away are removed. A reader that resolves ..data once sees one version whole.
// Use it to play the kubelet's part for programs that read a mounted Secret. Safe for concurrent
// use (writes are serialized).
type SecretVolume struct {
	// Dir is the volume's directory (created on the first Write).
	Dir string
	mu  sync.Mutex
}

// Write makes data the volume's content, in one atomic swap.
func (v *SecretVolume) Write(data map[string][]byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for key := range data {
		if key == "" || strings.HasPrefix(key, "..") || strings.ContainsRune(key, '/') {
			return fmt.Errorf("secret volume: key %q is not a file name the kubelet writes", key)
		}
	}
	if err := os.MkdirAll(v.Dir, 0o755); err != nil {
		return err
	}
	old, err := os.Readlink(filepath.Join(v.Dir, VolumeDataLink))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	ts, err := os.MkdirTemp(v.Dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	for key, val := range data {
		if err := os.WriteFile(filepath.Join(ts, key), val, 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(v.Dir, volumeDataTmp)
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(v.Dir, VolumeDataLink)); err != nil {
		return err
	}
	if err := v.linkKeys(data); err != nil {
		return err
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(v.Dir, old))
	}
	return nil
}

// linkKeys creates key -> ..data/key for every key and removes the links of keys that are gone.
func (v *SecretVolume) linkKeys(data map[string][]byte) error {
	entries, err := os.ReadDir(v.Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, keep := data[e.Name()]; !keep && !strings.HasPrefix(e.Name(), "..") {
			if err := os.Remove(filepath.Join(v.Dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for key := range data {
		link := filepath.Join(v.Dir, key)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join(VolumeDataLink, key), link); err != nil {
			return err
		}
	}
	return nil
}

// WriteStrings is Write with string values.
func (v *SecretVolume) WriteStrings(data map[string]string) error {
	b := make(map[string][]byte, len(data))
	for k, s := range data {
		b[k] = []byte(s)
	}
	return v.Write(b)
}
