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
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// Intercept returns an operator.Hooks.WrapClient that routes the reconciler's calls through
// funcs (controller-runtime's interceptor): API-server faults injected around the real calls.
func Intercept(funcs interceptor.Funcs) func(client.Client) client.Client {
	return func(c client.Client) client.Client { return interceptor.NewClient(noWatch{c}, funcs) }
}

// noWatch makes the reconciler's client an interceptor's client.WithWatch: the reconciler never
// watches through it (the manager's caches do).
type noWatch struct{ client.Client }

func (noWatch) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	return nil, errors.New("the reconciler's client does not watch")
}
