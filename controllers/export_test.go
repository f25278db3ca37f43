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

package controllers

import "k8s.io/apimachinery/pkg/util/wait"

// What the envtest scenarios (package controllers_test, beside this package: they run the manager
// internal/operator builds, which imports this package) read of its internals.

// TokenDigest is what status.tokenDigest holds for a token value.
var TokenDigest = tokenDigest

// SetRefreshTokenWriteBackoff changes the in-pass retry of refresh-token writes; call it before
// any manager starts.
func SetRefreshTokenWriteBackoff(b wait.Backoff) { refreshTokenWriteBackoff = b }
