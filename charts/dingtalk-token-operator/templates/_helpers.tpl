{{/*
The chart's name, or nameOverride.
*/}}
{{- define "dingtalk-token-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: fullnameOverride, or the release name with the chart name appended unless it already
contains it. Every object's name starts with it, so that two releases never share an object.
*/}}
{{- define "dingtalk-token-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dingtalk-token-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "dingtalk-token-operator.labels" -}}
helm.sh/chart: {{ include "dingtalk-token-operator.chart" . }}
{{ include "dingtalk-token-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "dingtalk-token-operator.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dingtalk-token-operator
{{- end }}

{{/*
Labels that select the manager's pods.
*/}}
{{- define "dingtalk-token-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dingtalk-token-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller-manager
{{- end }}

{{- define "dingtalk-token-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dingtalk-token-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The leader election Lease: leaderElection.id, else one per release (several releases may share a
namespace).
*/}}
{{- define "dingtalk-token-operator.leaderElectionID" -}}
{{- default (printf "%s.dingtalk.tokens.dev" (include "dingtalk-token-operator.fullname" .)) .Values.leaderElection.id }}
{{- end }}

{{/*
The manager's GOMEMLIMIT: 40% of resources.limits.memory, in MiB. The Go runtime keeps its own
memory under it by collecting harder; the binary's pages (about 45 MiB), which it does not count,
come on top, and the rest of the limit is headroom: at 256Mi the process peaks near 60% of its
limit at 10,000 tokens (docs/install.md, "Sizing"). Empty when no memory limit is set. The limit is
read as a Kubernetes quantity: a number, bare or with Ki, Mi, Gi, Ti, k, M, G or T.
*/}}
{{- define "dingtalk-token-operator.goMemLimit" -}}
{{- $limit := dig "limits" "memory" "" (.Values.resources | default dict) }}
{{- if kindIs "float64" $limit }}
{{- $limit = printf "%.0f" $limit }}
{{- end }}
{{- $limit = toString $limit }}
{{- if $limit }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$" $limit) }}
{{- fail (printf "resources.limits.memory %q: the chart sets GOMEMLIMIT to 40%% of it and reads a number, bare or with Ki, Mi, Gi, Ti, k, M, G or T (e.g. 256Mi)" $limit) }}
{{- end }}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- $bytes := mulf (regexReplaceAll "[A-Za-z]+$" $limit "" | float64) (get $units (regexReplaceAll "^[0-9.]+" $limit "")) }}
{{- printf "%dMiB" (int64 (floor (divf (mulf $bytes 0.4) 1048576))) }}
{{- end }}
{{- end }}

{{- define "dingtalk-token-operator.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
The manager's image. values.schema.json refuses an empty repository already; required keeps the
message when the schema is skipped (--skip-schema-validation).
*/}}
{{- define "dingtalk-token-operator.image" -}}
{{- $repo := required "set image.repository to the registry repository holding the operator image, e.g. --set image.repository=registry.example.com/dingtalk-token-operator" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (include "dingtalk-token-operator.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
The subject every binding names: the manager's ServiceAccount.
*/}}
{{- define "dingtalk-token-operator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "dingtalk-token-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The manifests `make manifests` copies from config/ into generated/ (CRDs, RBAC roles, the admission
policy, the alerts), parsed: a JSON list of the objects in the files matching the glob, in file
order. The templates render from these instead of copies of their content, so that the chart cannot
drift from config/ (the chart's render test compares them too).
Usage: include "dingtalk-token-operator.generated" (list $ "generated/rbac/*.yaml") | fromJsonArray
*/}}
{{- define "dingtalk-token-operator.generated" -}}
{{- $root := index . 0 }}
{{- $objs := list }}
{{- range $path, $_ := $root.Files.Glob (index . 1) }}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" ($root.Files.Get $path) -1 }}
{{- $obj := fromYaml $doc }}
{{- if hasKey $obj "Error" }}
{{- fail (printf "%s: %s" $path $obj.Error) }}
{{- end }}
{{- if $obj.kind }}
{{- $objs = append $objs $obj }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $objs }}
{{- end }}

{{/*
Labels for an object rendered from generated/: its own (e.g. aggregate-to-admin) and the chart's.
*/}}
{{- define "dingtalk-token-operator.mergeLabels" -}}
{{- $root := index . 0 }}
{{- $obj := index . 1 }}
{{- $labels := include "dingtalk-token-operator.labels" $root | fromYaml }}
{{- $_ := set $obj.metadata "labels" (merge $labels (default (dict) $obj.metadata.labels)) }}
{{- end }}
