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
{{- $providers := dict }}
{{- range $name := list "aws" "runpod" "lyceum" }}
{{- $p := index $.Values.providers $name }}
{{- if $p.enabled }}
{{- $section := deepCopy (default dict $p.settings) }}
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
{{- if $providers }}
{{- $_ := set $cfg "providers" $providers }}
{{- end }}
{{- toYaml (merge $cfg (default dict $c.extra)) }}
{{- end }}
