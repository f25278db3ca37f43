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

// Command plugindocs prints the transcripts of docs/plugin.md: it starts a control plane, the
// DingTalk simulator and the operator (internal/testenv), builds kubectl-dingtalk, creates a few
// DingTalkTokens in the namespace demo and runs each command of the plugin as a user would,
// signing the user in through the simulator like a browser. The output is Markdown: the real
// output of each command.
//
//	go run ./hack/plugindocs > /tmp/transcripts.md
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

const ns = "demo"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "plugindocs:", err)
		os.Exit(1)
	}
}

// world is the running environment and the plugin binary.
type world struct {
	env        *testenv.Environment
	bin        string
	kubeconfig string
}

func run() error {
	ctrl.SetLogger(logr.Discard())
	tmp, err := os.MkdirTemp("", "plugindocs-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	w := &world{bin: filepath.Join(tmp, "kubectl-dingtalk"), kubeconfig: filepath.Join(tmp, "kubeconfig")}
	if w.env, err = testenv.Start(testenv.Options{Simulator: &simulator.Config{}}); err != nil {
		return err
	}
	defer func() { _ = w.env.Stop() }()
	if err := testenv.Build(w.env.Root, "./cmd/kubectl-dingtalk", w.bin, false); err != nil {
		return err
	}
	if err := w.env.AdminKubeconfig(w.kubeconfig, "demo-admin"); err != nil {
		return err
	}
	ctx := context.Background()
	mgr, err := w.env.StartManager(ctx, w.env.ManagerOptions(), operator.Hooks{Logger: logr.Discard()})
	if err != nil {
		return err
	}
	defer func() { _ = mgr.Stop() }()
	if err := w.setUp(ctx); err != nil {
		return err
	}
	return w.transcripts(ctx)
}

// setUp creates the namespace demo with a healthy token, a failing one and a User token not
// signed in yet.
func (w *world) setUp(ctx context.Context) error {
	c, sim := w.env.Client, w.env.Sim
	steps := []error{
		c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}),
		sim.AddApp(simulator.App{AppKey: "dingcrmbot", AppSecret: "crm-bot-app-secret", TokenLifetime: simulator.Duration(2 * time.Hour)}),
		sim.AddApp(simulator.App{AppKey: "dingcrmevents", AppSecret: "crm-events-app-secret", TokenLifetime: simulator.Duration(2 * time.Hour)}),
		sim.AddApp(simulator.App{AppKey: "dingbilling", AppSecret: "billing-app-secret", TokenLifetime: simulator.Duration(2 * time.Hour)}),
		sim.AddUser(simulator.User{ClientID: "dingalice", ClientSecret: "alice-client-secret", CorpID: "dingcorp1", TokenLifetime: simulator.Duration(2 * time.Hour)}),
		secret(ctx, w, "crm-bot-credentials", map[string]string{"appKey": "dingcrmbot", "appSecret": "crm-bot-app-secret"}),
		secret(ctx, w, "crm-events-credentials", map[string]string{"appKey": "dingcrmevents", "appSecret": "crm-events-app-secret"}),
		secret(ctx, w, "billing-credentials", map[string]string{"appKey": "dingbilling", "appSecret": "an-old-app-secret"}),
		secret(ctx, w, "alice-oauth", map[string]string{"clientId": "dingalice", "clientSecret": "alice-client-secret"}),
	}
	if err := errors.Join(steps...); err != nil {
		return err
	}
	for _, tok := range []*v1alpha1.DingTalkToken{
		token("crm-bot", "crm", v1alpha1.TokenTypeInternalApp, "crm-bot-credentials"),
		token("crm-events", "crm", v1alpha1.TokenTypeInternalApp, "crm-events-credentials"),
		token("billing", "billing", v1alpha1.TokenTypeInternalApp, "billing-credentials"),
		token("alice", "", v1alpha1.TokenTypeUser, "alice-oauth"),
	} {
		if err := c.Create(ctx, tok); err != nil {
			return err
		}
	}
	for _, name := range []string{"crm-bot", "crm-events"} {
		if _, err := testenv.WaitForToken(ctx, c, ns, name, time.Minute, testenv.IsReady); err != nil {
			return err
		}
	}
	_, err := testenv.WaitForToken(ctx, c, ns, "billing", time.Minute,
		testenv.HasCondition(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsRejected))
	if err != nil {
		return err
	}
	return w.setUpCluster(ctx)
}

// setUpCluster creates the ClusterDingTalkToken crm-platform, fanned out to demo and team-x, where
// a Secret of its target's name that it does not own refuses it.
func (w *world) setUpCluster(ctx context.Context) error {
	c := w.env.Client
	steps := []error{
		c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-x"}}),
		w.env.Sim.AddApp(simulator.App{AppKey: "dingplatform", AppSecret: "platform-app-secret", TokenLifetime: simulator.Duration(2 * time.Hour)}),
		secret(ctx, w, "platform-credentials", map[string]string{"appKey": "dingplatform", "appSecret": "platform-app-secret"}),
	}
	_, err := testenv.CreateSecret(ctx, c, "team-x", "crm-platform-token", map[string]string{"written-by": "someone else"})
	steps = append(steps, err, c.Create(ctx, &v1alpha1.ClusterDingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Name: "crm-platform"},
		Spec: v1alpha1.ClusterDingTalkTokenSpec{
			Type:           v1alpha1.TokenTypeInternalApp,
			CredentialsRef: v1alpha1.ClusterCredentialsReference{Namespace: ns, Name: "platform-credentials"},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{ns, "team-x"}}}},
			Target: v1alpha1.ClusterTarget{Name: "crm-platform-token"},
		},
	}))
	if err := errors.Join(steps...); err != nil {
		return err
	}
	var last *v1alpha1.NamespaceCounts
	err = wait.PollUntilContextTimeout(ctx, testenv.PollInterval, time.Minute, true, func(ctx context.Context) (bool, error) {
		var tok v1alpha1.ClusterDingTalkToken
		if err := c.Get(ctx, client.ObjectKey{Name: "crm-platform"}, &tok); err != nil {
			return false, err
		}
		last = tok.Status.Namespaces
		return last != nil && last.Provisioned == 1 && last.Failed == 1 && tok.Status.LastRefreshTime != nil, nil
	})
	if err != nil {
		return fmt.Errorf("ClusterDingTalkToken crm-platform: namespaces %+v: %w", last, err)
	}
	return nil
}

func secret(ctx context.Context, w *world, name string, data map[string]string) error {
	_, err := testenv.CreateSecret(ctx, w.env.Client, ns, name, data)
	return err
}

func token(name, team string, typ v1alpha1.TokenType, creds string) *v1alpha1.DingTalkToken {
	tok := testenv.NewToken(ns, name, typ, creds)
	if team != "" {
		tok.Labels = map[string]string{"team": team}
	}
	return tok
}

// transcripts runs the commands docs/plugin.md shows and prints each with its output.
func (w *world) transcripts(ctx context.Context) error {
	runAll := func(cmds ...[]string) error {
		for _, args := range cmds {
			if err := w.show(w.command(ctx, args...)); err != nil {
				return err
			}
		}
		return nil
	}
	err := runAll(
		[]string{"version"},
		[]string{"status", "crm-bot", "-n", ns},
		[]string{"status", "billing", "-n", ns},
		[]string{"status", "alice", "-n", ns},
	)
	if err != nil {
		return err
	}
	if err := w.authorize(ctx); err != nil {
		return err
	}
	return runAll(
		[]string{"status", "alice", "-n", ns},
		[]string{"refresh", "crm-bot", "-n", ns},
		[]string{"refresh", "-l", "team=crm", "-n", ns},
		[]string{"refresh", "billing", "-n", ns},
		[]string{"refresh", "--all", "-n", ns, "--wait=false"},
		[]string{"refresh", "nope", "-n", ns},
		[]string{"status", "cdtt/crm-platform"},
		[]string{"refresh", "cdtt/crm-platform"},
	)
}

// command is the plugin run with the demo kubeconfig; what is shown omits --kubeconfig.
func (w *world) command(ctx context.Context, args ...string) (*exec.Cmd, []string) {
	cmd := exec.CommandContext(ctx, w.bin, append([]string{"--kubeconfig", w.kubeconfig}, args...)...)
	return cmd, args
}

// show runs cmd and prints it as a shell session.
func (w *world) show(cmd *exec.Cmd, args []string) error {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return err
	}
	fmt.Printf("```console\n$ kubectl dingtalk %s\n%s", strings.Join(args, " "), out.String())
	if exit != nil {
		fmt.Printf("$ echo $?\n%d\n", exit.ExitCode())
	}
	fmt.Print("```\n\n")
	return nil
}

// authorize runs `authorize alice --no-browser` and follows the printed URL as a browser would:
// through the simulator's sign-in page to the plugin's callback.
func (w *world) authorize(ctx context.Context) error {
	addr, err := testenv.FreeAddr()
	if err != nil {
		return err
	}
	port := addr[strings.LastIndex(addr, ":")+1:]
	cmd, args := w.command(ctx, "authorize", "alice", "-n", ns, "--no-browser", "--port", port, "--login-endpoint", w.env.Sim.URL())
	pr, pw := io.Pipe()
	var out bytes.Buffer
	// One writer for both streams: exec then writes from one goroutine at a time.
	both := io.MultiWriter(&out, pw)
	cmd.Stdout, cmd.Stderr = both, both
	if err := cmd.Start(); err != nil {
		return err
	}
	signIn := regexp.MustCompile(`^    (http://\S+/oauth2/auth\?\S+)$`)
	go func() {
		defer func() { _, _ = io.Copy(io.Discard, pr) }()
		buf := make([]byte, 64<<10)
		var seen string
		for {
			n, err := pr.Read(buf)
			seen += string(buf[:n])
			for _, line := range strings.Split(seen, "\n") {
				if m := signIn.FindStringSubmatch(line); m != nil {
					resp, err := http.Get(m[1]) // the browser: sign-in page, then the callback
					if err == nil {
						_ = resp.Body.Close()
					}
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	err = cmd.Wait()
	_ = pw.Close()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return err
	}
	fmt.Printf("```console\n$ kubectl dingtalk %s\n%s```\n\n", strings.Join(args, " "), out.String())
	if exit != nil {
		return fmt.Errorf("authorize failed: %s", out.String())
	}
	return nil
}
