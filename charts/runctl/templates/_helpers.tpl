{{/* Names, labels and small values shared by the templates. */}}

{{- define "runctl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "runctl.fullname" -}}
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

{{- define "runctl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "runctl.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "runctl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: runctl
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "runctl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runctl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "runctl.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* How many shards the cluster's namespaces are split into (sharding.shards, default 1). */}}
{{- define "runctl.shards" -}}
{{- $s := default dict .Values.sharding }}
{{- int (default 1 $s.shards) }}
{{- end }}

{{/*
The name of shard i's Deployment, Service and PodDisruptionBudget: <fullname>-shard-<i>, the
full name cut so that the whole stays a 63-character DNS label. Argument: (list $ i).
*/}}
{{- define "runctl.shardName" -}}
{{- $root := index . 0 }}
{{- printf "%s-shard-%d" (include "runctl.fullname" $root | trunc 54 | trimSuffix "-") (int (index . 1)) }}
{{- end }}

{{/* The label that tells the shards' pods apart (sharding.shards > 1). */}}
{{- define "runctl.shardLabel" -}}
runctl.dev/shard: {{ index . 1 | toString | quote }}
{{- end }}

{{/* The selector labels of shard i's pods. Argument: (list $ i). */}}
{{- define "runctl.shardSelectorLabels" -}}
{{ include "runctl.selectorLabels" (index . 0) }}
{{ include "runctl.shardLabel" . }}
{{- end }}

{{/* Where the callback TLS Secret (callback.tls.secretName) is mounted. */}}
{{- define "runctl.callbackTlsDir" -}}
/var/run/secrets/runctl/callback-tls
{{- end }}

{{/*
The base URL training machines report to (jobs.callbackUrl): callback.url, else
config.extra.jobs.callbackUrl, else https://<ingress.host> when the Ingress is enabled (it
routes /callback/ on that host; machines append /callback/...). Fails when a cloud provider is
enabled and there is none: those machines run outside the cluster and cannot reach a Service.
*/}}
{{- define "runctl.callbackUrl" -}}
{{- $extra := default dict .Values.config.extra }}
{{- $url := .Values.callback.url }}
{{- if not $url }}
{{- $url = dig "jobs" "callbackUrl" "" $extra }}
{{- end }}
{{- if and (not $url) .Values.ingress.enabled .Values.ingress.host }}
{{- $url = printf "https://%s" .Values.ingress.host }}
{{- end }}
{{- $url = trimSuffix "/" $url }}
{{- if or (hasSuffix "/callback" $url) (contains "/callback/" $url) }}
{{- fail (printf "callback.url %q must be the base URL without /callback: machines append /callback/<namespace>/<job>/<attempt>/... themselves" $url) }}
{{- end }}
{{- $shards := include "runctl.shards" . | int }}
{{- if gt $shards 1 }}
{{- if and .Values.ingress.enabled (not (contains "{shard}" .Values.ingress.host)) }}
{{- fail (printf "ingress.host %q must contain {shard} when sharding.shards is %d: the Ingress routes one host per shard to that shard's Service (%s), e.g. ingress.host=runctl-{shard}.example.com gives runctl-0.example.com ... runctl-%d.example.com. See docs/operations.md#sharding." .Values.ingress.host $shards (printf "%s-shard-<i>" (include "runctl.fullname" . | trunc 54 | trimSuffix "-")) (sub $shards 1)) }}
{{- end }}
{{- if and $url (not (contains "{shard}" $url)) }}
{{- fail (printf "callback.url %q must contain {shard} when sharding.shards is %d: a machine reports to the shard that owns its job, so each shard needs an address of its own reaching its Service %s (port %d), e.g. https://runctl-{shard}.example.com; the operator puts the shard's number in place of {shard}. See docs/operations.md#sharding." $url $shards (printf "%s-shard-<i>" (include "runctl.fullname" . | trunc 54 | trimSuffix "-")) (int .Values.ports.callback)) }}
{{- end }}
{{- end }}
{{- $cloud := list }}
{{- range $name := list "aws" "runpod" "lyceum" }}
{{- if (index $.Values.providers $name).enabled }}
{{- $cloud = append $cloud (printf "providers.%s" $name) }}
{{- end }}
{{- end }}
{{- if and (not $url) $cloud }}
{{- $service := printf "the %s Service" (include "runctl.fullname" .) }}
{{- if gt $shards 1 }}
{{- $service = printf "the %s-shard-<i> Service of each shard i, with {shard} in the URL where i goes" (include "runctl.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}
{{- fail (printf "callback.url is required when a cloud provider is enabled (%s): machines rented there run outside the cluster and must reach the operator's job callback endpoint (heartbeats, exit codes) from the internet, which a cluster-internal Service address does not allow. Set callback.url to a public HTTPS base URL that reaches port %d of %s (a LoadBalancer, a tunnel; callback.tls.secretName makes the operator serve TLS itself), or set ingress.enabled=true and ingress.host=<public host name> to use https://<ingress.host>. See docs/getting-started.md." (join ", " $cloud) (int .Values.ports.callback) $service) }}
{{- end }}
{{- $url }}
{{- end }}

{{/* The operator configuration file; see docs/configuration.md for every field. */}}
{{- define "runctl.config" -}}
{{- $c := .Values.config }}
{{- $cfg := dict
  "installationId" $c.installationId
  "metricsAddr" (printf "0.0.0.0:%d" (int .Values.ports.metrics))
  "log" $c.log
  "pollIntervalSeconds" $c.pollIntervalSeconds
  "leaderElection" $c.leaderElection
  "backoff" $c.backoff
  "reconcileConcurrency" $c.reconcileConcurrency }}
{{- if $c.watchNamespace }}
{{- $_ := set $cfg "watchNamespace" $c.watchNamespace }}
{{- end }}
{{- if dig "sharding" nil (default dict $c.extra) }}
{{- fail "config.extra.sharding is not allowed: set sharding.shards (the chart then renders one Deployment per shard, each with its RUNCTL_SHARD_INDEX)" }}
{{- end }}
{{- $shards := include "runctl.shards" . | int }}
{{- if gt $shards 1 }}
{{- if $c.watchNamespace }}
{{- fail (printf "sharding.shards %d needs config.watchNamespace empty (and rbac.scope=cluster): shards split the cluster's namespaces between them, a deployment that watches one namespace cannot be split" $shards) }}
{{- end }}
{{- $_ := set $cfg "sharding" (dict "shards" $shards) }}
{{- end }}
{{- $jobs := dict }}
{{- with include "runctl.callbackUrl" . }}
{{- $_ := set $jobs "callbackUrl" . }}
{{- end }}
{{- with .Values.callback.tls.secretName }}
{{- $dir := include "runctl.callbackTlsDir" $ }}
{{- $_ := set $jobs "callbackTls" (dict "certFile" (printf "%s/tls.crt" $dir) "keyFile" (printf "%s/tls.key" $dir)) }}
{{- end }}
{{- if $jobs }}
{{- $_ := set $cfg "jobs" $jobs }}
{{- end }}
{{- $providers := dict }}
{{- range $name := list "aws" "runpod" "lyceum" }}
{{- $p := index $.Values.providers $name }}
{{- if $p.enabled }}
{{- $section := deepCopy (default dict $p.settings) }}
{{- $_ := set $section "enabled" true }}
{{- if eq $name "aws" }}
{{- $_ := set $section "defaultRegion" $p.defaultRegion }}
{{- end }}
{{- if and (ne $name "aws") (not $p.existingSecret) }}
{{- fail (printf "providers.%s.existingSecret is required when providers.%s.enabled is true (a Secret with key apiKey)" $name $name) }}
{{- end }}
{{- if $p.existingSecret }}
{{- $_ := set $section "credentialsSecret" (dict "namespace" $.Release.Namespace "name" $p.existingSecret) }}
{{- end }}
{{- $_ := set $providers $name $section }}
{{- end }}
{{- end }}
{{- if .Values.providers.sim.enabled }}
{{- $_ := set $providers "sim" (dict "enabled" true) }}
{{- end }}
{{- if .Values.providers.kubernetes.enabled }}
{{- $section := deepCopy (default dict .Values.providers.kubernetes.settings) }}
{{- $_ := set $section "enabled" true }}
{{- $_ := set $providers "kubernetes" $section }}
{{- end }}
{{- if $providers }}
{{- $_ := set $cfg "providers" $providers }}
{{- end }}
{{- toYaml (merge $cfg (default dict $c.extra)) }}
{{- end }}
