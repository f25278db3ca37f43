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
	"github.com/spf13/cobra"
)

func newStatusCommand(o *Options) *cobra.Command {
	var cluster bool
	cmd := &cobra.Command{
		Use:   "status NAME | cdtt/NAME",
		Short: "Show on one screen why a DingTalkToken or ClusterDingTalkToken is or is not Ready",
		Long: "status shows a DingTalkToken's type, its Ready and Refreshed conditions with a hint for each failing\n" +
			"reason, when the token expires and the next refresh is due, the last failure and its backoff, the\n" +
			"Secrets it uses (exists, owned, key names: never values) and its recent events.\n" +
			"For a ClusterDingTalkToken (cdtt/NAME, or NAME with --cluster) it shows the same of its token, and its\n" +
			"namespaces: how many are selected and hold the token, and the failed ones with their reasons.",
		Example: "  kubectl dingtalk status crm-bot -n apps\n" +
			"  kubectl dingtalk status cdtt/crm-bot\n" +
			"  kubectl dingtalk status --cluster crm-bot",
		Args: needName,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.client()
			if err != nil {
				return err
			}
			ref, err := parseRef(args[0], ns, cluster)
			if err != nil {
				return err
			}
			if ref.Cluster {
				rep, err := loadClusterStatus(cmd.Context(), c, ref.Name)
				if err != nil {
					return err
				}
				o.outMu.Lock()
				defer o.outMu.Unlock()
				return renderClusterStatus(o.out(), rep, o.Clock.Now())
			}
			rep, err := loadStatus(cmd.Context(), c, ref.key())
			if err != nil {
				return err
			}
			o.outMu.Lock()
			defer o.outMu.Unlock()
			return renderStatus(o.out(), rep, o.Clock.Now())
		},
	}
	cmd.Flags().BoolVar(&cluster, "cluster", false, clusterFlagUsage)
	return cmd
}
