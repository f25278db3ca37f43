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

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/refreshtoken"
)

// What the envtest scenarios (package controllers_test, beside this package: they run the manager
// internal/operator builds, which imports this package) read of its internals.

// TokenDigest is what status.tokenDigest holds for a token value under the digest key kept in
// namespace (the operator's namespace; "default" for the managers of the suite).
func TokenDigest(ctx context.Context, c client.Reader, namespace string, uid types.UID, token string) (string, error) {
	key, err := LoadDigestKey(ctx, c, nil, namespace)
	if err != nil {
		return "", err
	}
	return digest.New(key).Token(uid, token), nil
}

// SetRefreshTokenWriteBackoff changes the in-pass retry of refresh-token writes; call it before
// any manager starts.
func SetRefreshTokenWriteBackoff(b wait.Backoff) { refreshtoken.WriteBackoff = b }
