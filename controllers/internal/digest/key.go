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

package digest

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
)

// The installation's digest key: a random key, kept in a Secret of the operator's own namespace
// and created on the first start, keys every digest the operator shows (status) or keeps
// (refresh-token Secrets). A reader of a DingTalkToken, who knows its UID, cannot test guesses of
// a token or a credential against them offline; the key survives restarts, so the digests do too.

// SecretName names the Secret, in the operator's namespace, that keeps the digest key.
const SecretName = "dingtalk-token-operator-digest-key"

// SecretField is the key of SecretName holding the key.
const SecretField = "key"

// KeySize is the size of the digest key (HMAC-SHA256's block-size-independent strength).
const KeySize = 32

// LoadKey returns the installation's digest key from Secret SecretName in namespace, creating it
// (as fieldOwner) with a random key when it does not exist and w is not nil. Replicas starting
// together agree: the one whose create loses reads the winner's key.
func LoadKey(ctx context.Context, r client.Reader, w client.Writer, namespace string, fieldOwner client.FieldOwner) ([]byte, error) {
	key := types.NamespacedName{Namespace: namespace, Name: SecretName}
	s := &corev1.Secret{}
	err := r.Get(ctx, key, s)
	if apierrors.IsNotFound(err) && w != nil {
		s, err = createKey(ctx, w, key, fieldOwner)
		if apierrors.IsAlreadyExists(err) {
			s = &corev1.Secret{}
			err = r.Get(ctx, key, s)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading the digest key Secret %s: %w", key, safe.APIError(err))
	}
	k := s.Data[SecretField]
	if len(k) != KeySize {
		return nil, fmt.Errorf("secret %s holds no %d-byte %q: delete it to have a new key made (every token is then fetched again once)",
			key, KeySize, SecretField)
	}
	return k, nil
}

func createKey(ctx context.Context, w client.Writer, key types.NamespacedName, fieldOwner client.FieldOwner) (*corev1.Secret, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
			Labels: map[string]string{"app.kubernetes.io/part-of": "dingtalk-token-operator"}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{SecretField: k},
	}
	if err := w.Create(ctx, s, fieldOwner); err != nil {
		return nil, err
	}
	return s, nil
}
