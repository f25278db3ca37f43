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
	"errors"
	"os/exec"
	"runtime"
)

// openBrowser opens url with the platform's opener: open (macOS), rundll32's URL handler
// (Windows), else xdg-open. It returns when the opener started; an error means it could not.
func openBrowser(url string) error {
	name, args := opener(runtime.GOOS)
	if name == "" {
		return errors.New("no browser opener for " + runtime.GOOS)
	}
	cmd := exec.Command(name, append(args, url)...)
	if err := cmd.Start(); err != nil {
		return err
	}
	// The opener hands the URL to the browser and exits; reap it without holding the command up.
	go func() { _ = cmd.Wait() }()
	return nil
}

// opener is the command that opens a URL in the default browser on goos.
func opener(goos string) (string, []string) {
	switch goos {
	case "darwin":
		return "open", nil
	case "windows":
		return "rundll32", []string{"url.dll,FileProtocolHandler"}
	case "linux", "freebsd", "openbsd", "netbsd", "dragonfly", "solaris", "illumos":
		return "xdg-open", nil
	}
	return "", nil
}
