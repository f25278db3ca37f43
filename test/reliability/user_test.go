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

package reliability

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// writeFaults makes a fraction of the manager's writes fail, on top of the real client.
//
// Why an interceptor rather than an admission webhook or a ValidatingAdmissionPolicy refusing
// writes: admission can only refuse a write before it is stored, and CEL has no randomness, so a
// policy fails all writes or none for a while. The interceptor fails a random fraction, and can
// also produce the nastier failure real clusters have: the write is stored but its answer is lost
// (a timeout after etcd committed), so the client believes it failed. Every write that is not
// failed, and every applied one, goes to the real API server.
type writeFaults struct {
	on atomic.Bool
	// secretRate is the fraction of Secret writes failed: half refused, half applied then
	// reported failed. statusRate is the fraction of status writes refused.
	secretRate, statusRate float64
	refused, lost          atomic.Int64
}

var errAnswerLost = apierrors.NewTimeoutError("injected: the write was applied but its answer was lost", 1)

func (w *writeFaults) secretWrite(obj client.Object, write func() error) error {
	if !w.on.Load() || !isSecret(obj) {
		return write()
	}
	switch r := rand.Float64(); {
	case r < w.secretRate/2:
		w.refused.Add(1)
		return errInjected
	case r < w.secretRate:
		if err := write(); err != nil {
			return err
		}
		w.lost.Add(1)
		return errAnswerLost
	default:
		return write()
	}
}

func (w *writeFaults) statusWrite(write func() error) error {
	if w.on.Load() && rand.Float64() < w.statusRate {
		w.refused.Add(1)
		return errInjected
	}
	return write()
}

func (w *writeFaults) funcs() *interceptor.Funcs {
	return &interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			return w.secretWrite(obj, func() error { return c.Create(ctx, obj, opts...) })
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			return w.secretWrite(obj, func() error { return c.Update(ctx, obj, opts...) })
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			return w.secretWrite(obj, func() error { return c.Patch(ctx, obj, patch, opts...) })
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			return w.secretWrite(appliedSecret(obj), func() error { return c.Apply(ctx, obj, opts...) })
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			return w.statusWrite(func() error { return c.SubResource(sub).Update(ctx, obj, opts...) })
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			return w.statusWrite(func() error { return c.SubResource(sub).Patch(ctx, obj, patch, opts...) })
		},
	}
}

// testUserRefreshTokenRotations: fifteen users whose tokens live 12 s (the shortest lifetime the
// operator accepts from DingTalk is 10 s), so a refresh token rotates about twice a second (the
// simulator invalidates the old one on each rotation). For at least 100
// rotations, a quarter of the manager's Secret writes fail (half of them after being applied),
// a tenth of its status writes fail, and the manager is stopped and a new one started every few
// seconds (memory lost; each DingTalk call is delayed so that stops find calls in flight). Zero
// refresh tokens may be lost: the simulator never sees a refused refresh token, no status ever
// says ReauthorizationRequired, and once the faults stop every token refreshes again with the
// simulator's current refresh token, which is what its refresh-token Secret holds.
//
// Stops are graceful, as on SIGTERM (running reconciles finish). A SIGKILL between DingTalk's
// answer and the refresh-token write is the one loss window docs/security.md documents; it is not
// tested.
func testUserRefreshTokenRotations(t *testing.T) {
	const (
		users     = 15
		rotations = 100
		lifetime  = 12 * time.Second
		// Stops come every 3-6s, at random so that they do not fall into step with the refreshes.
		stopEvery = 3 * time.Second
		minStops  = 10
	)
	ns := env.CreateNamespace(t, "rel-userrotations")
	type user struct{ clientID, name string }
	var all []user
	for i := range users {
		u := user{clientID: "reluser" + testutil.RandHex(6), name: "user-" + string(rune('a'+i))}
		env.Sensitive.Add(testenv.Credential, u.clientID)
		secret, bootstrap := secretValue("clientSecret"), secretValue("refreshToken")
		if err := env.Sim.AddUser(simulator.User{ClientID: u.clientID, ClientSecret: secret, RefreshTokens: []string{bootstrap},
			CorpID: "dingcorp" + testutil.RandHex(4), TokenLifetime: simulator.Duration(lifetime)}); err != nil {
			t.Fatal(err)
		}
		// Each call waits a little: a stop then often finds one in flight.
		setFault(t, simulator.Fault{Credential: u.clientID, Latency: simulator.Duration(400 * time.Millisecond)})
		env.CreateSecret(t, ns, u.name+"-credentials", map[string]string{"clientId": u.clientID, "clientSecret": secret, "refreshToken": bootstrap})
		env.Create(t, testenv.NewToken(ns, u.name, v1alpha1.TokenTypeUser, u.name+"-credentials"))
		all = append(all, u)
	}
	tr := track(t, ns)
	faults := &writeFaults{secretRate: 0.25, statusRate: 0.10}
	faults.on.Store(true)
	m := startManager(t, ns, faults.funcs())

	rotated := func() (n int64) {
		for _, u := range all {
			n += env.Results(simulator.PathUserAccessToken, u.clientID)["success"]
		}
		return n
	}
	// lost fails the test as soon as DingTalk answers anything but a success: a refused refresh
	// token is a lost one.
	g := NewWithT(t)
	lost := func() {
		t.Helper()
		for _, u := range all {
			for result, n := range env.Results(simulator.PathUserAccessToken, u.clientID) {
				g.Expect(result).To(BeElementOf("success", "canceled"), "%s: %d calls answered %s: a refresh token was lost", u.name, n, result)
			}
		}
	}
	deadline := time.Now().Add(150 * time.Second)
	stops := 0
	for (rotated() < rotations || stops < minStops) && time.Now().Before(deadline) {
		time.Sleep(stopEvery + rand.N(stopEvery)) // the stop schedule, not a synchronization
		if err := m.Stop(); err != nil {
			t.Error(err)
		}
		stops++
		lost()
		m = startManager(t, ns, faults.funcs())
	}
	g.Expect(rotated()).To(BeNumerically(">=", rotations), "rotations within the time bound")
	faults.on.Store(false)
	t.Logf("%d rotations, %d manager stops, %d writes refused and %d applied with a lost answer",
		rotated(), stops, faults.refused.Load(), faults.lost.Load())
	g.Expect(faults.refused.Load()+faults.lost.Load()).To(BeNumerically(">", 0), "write failures were injected")

	// Once the faults stop, every token refreshes again.
	base := map[string]int64{}
	for _, u := range all {
		base[u.clientID] = env.Results(simulator.PathUserAccessToken, u.clientID)["success"]
	}
	eventually(t, 60*time.Second, func(g Gomega) {
		for _, u := range all {
			g.Expect(env.Results(simulator.PathUserAccessToken, u.clientID)["success"]).To(BeNumerically(">", base[u.clientID]), u.name)
			tok := env.GetToken(g, ns, u.name)
			g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued), u.name)
			// The stored refresh token is the simulator's current one: the next refresh will work.
			rt := &corev1.Secret{}
			g.Expect(env.Client.Get(quiet, types.NamespacedName{Namespace: ns, Name: tok.RefreshTokenSecretName()}, rt)).To(Succeed())
			env.Sensitive.Add(testenv.RefreshToken, string(rt.Data[v1alpha1.RefreshTokenKey]))
			g.Expect(string(rt.Data[v1alpha1.RefreshTokenKey])).To(Equal(env.Sim.CurrentRefreshToken(u.clientID)), u.name)
		}
	})

	// Zero lost: DingTalk never saw a stale refresh token or a replayed bootstrap value.
	lost()
	for _, u := range all {
		env.Sensitive.Add(testenv.RefreshToken, env.Sim.CurrentRefreshToken(u.clientID))
		for _, o := range tr.history(u.name) {
			r := refreshedReason(o.status)
			g.Expect(r).NotTo(BeElementOf(v1alpha1.ReasonReauthorizationRequired, v1alpha1.ReasonCredentialsConflict),
				"%s at %s", u.name, o.at.Format(time.TimeOnly))
		}
	}
}
