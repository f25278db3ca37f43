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

// Package plugin is kubectl-dingtalk, the kubectl plugin of dingtalk-token-operator: `status`
// explains a DingTalkToken or ClusterDingTalkToken on one screen, `refresh` forces refreshes and
// waits for them,
// `authorize` signs a user in to DingTalk for a User token, `version` prints the build.
// It never prints a Secret's value, a token or an authorization code, and never sends the
// terminal a control character it did not write itself.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version"
)

// Options are what every command shares: kubectl's flags, the streams, the clock and the browser.
type Options struct {
	ConfigFlags *genericclioptions.ConfigFlags
	IOStreams   genericiooptions.IOStreams
	// Clock reads the time (status's durations, deadlines, the refresh annotation).
	Clock clock.WithTicker
	// OpenBrowser opens a URL in the user's browser (authorize).
	OpenBrowser func(url string) error
	// PollInterval is how often waits re-read the API server.
	PollInterval time.Duration

	outMu sync.Mutex
}

// NewOptions returns the options of a real run: kubectl's flags, the real clock, the platform's
// browser opener.
func NewOptions(streams genericiooptions.IOStreams) *Options {
	return &Options{
		ConfigFlags:  genericclioptions.NewConfigFlags(true),
		IOStreams:    streams,
		Clock:        clock.RealClock{},
		OpenBrowser:  openBrowser,
		PollInterval: time.Second,
	}
}

// NewCommand returns the root command, kubectl-dingtalk, with its subcommands.
func NewCommand(o *Options) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-dingtalk",
		Short: "Inspect, refresh and authorize DingTalkTokens",
		Long: "kubectl dingtalk works with the DingTalkTokens of dingtalk-token-operator:\n" +
			"status explains one (or a ClusterDingTalkToken: cdtt/NAME), refresh forces refreshes, authorize signs\n" +
			"a user in for a User token.\n" +
			"It never prints a Secret's value, a token or an authorization code.",
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl dingtalk"},
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("kubectl-dingtalk {{.Version}}\n")
	// --version without -v: kubectl's -v is the log verbosity.
	root.Flags().Bool("version", false, "print the plugin's version")
	root.SetOut(terminalWriter{o.IOStreams.Out})
	root.SetErr(terminalWriter{o.IOStreams.ErrOut})
	root.SetIn(o.IOStreams.In)
	o.ConfigFlags.AddFlags(root.PersistentFlags())
	root.AddCommand(newStatusCommand(o), newRefreshCommand(o), newAuthorizeCommand(o), newVersionCommand(o))
	return root
}

// Run runs the command line args and returns the process's exit status. A failure is one line on
// the error stream: "error: <reason>".
func Run(ctx context.Context, o *Options, args []string) int {
	cmd := NewCommand(o)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(terminalWriter{o.IOStreams.ErrOut}, "error: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

func newVersionCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			o.printf("kubectl-dingtalk %s\n", version.String())
			return nil
		},
	}
}

// printf writes to the output stream; safe for concurrent use (refresh's waits, the callback server).
func (o *Options) printf(format string, args ...any) {
	o.outMu.Lock()
	defer o.outMu.Unlock()
	fmt.Fprintf(o.out(), format, args...)
}

// out returns the output stream, for writers that hold it for a whole rendering. Everything
// written to it reaches the terminal with control characters escaped (terminalWriter).
func (o *Options) out() io.Writer { return terminalWriter{o.IOStreams.Out} }

// scheme knows the built-in kinds and DingTalkToken.
func scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// client builds an API client and the namespace from kubectl's flags (-n, --kubeconfig, --context, ...).
func (o *Options) client() (client.Client, string, error) {
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("reading the namespace: %w", err)
	}
	s, err := scheme()
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, "", fmt.Errorf("connecting to the API server: %w", err)
	}
	return c, ns, nil
}

// needName accepts exactly one argument, the object's name.
func needName(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return errors.New(cmd.CommandPath() + " needs exactly one DingTalkToken NAME; see --help")
	}
	return nil
}
