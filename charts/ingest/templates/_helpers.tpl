{{/*
Names, labels and small computed values shared by every template.
*/}}

{{/* Chart name, truncated to the 63 characters DNS labels allow. */}}
{{- define "ingest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "ingest.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "ingest.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Namespace of every namespaced object. */}}
{{- define "ingest.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "ingest.labels" -}}
helm.sh/chart: {{ include "ingest.chart" . }}
{{ include "ingest.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: firehose-newrelic
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: stable across upgrades, so never the chart version. */}}
{{- define "ingest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ingest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "ingest.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ingest.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The container image reference: digest wins over tag. */}}
{{- define "ingest.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the API keys file. */}}
{{- define "ingest.apiKeysSecretName" -}}
{{- default (printf "%s-api-keys" (include "ingest.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}

{{/* Name of the in-cluster firehose-local (development only). */}}
{{- define "ingest.firehoseLocalName" -}}
{{- printf "%s-firehose-local" (include "ingest.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The delivery stream ingest writes to. */}}
{{- define "ingest.deliveryStream" -}}
{{- if .Values.config.deliveryStream }}
{{- .Values.config.deliveryStream }}
{{- else if .Values.firehoseLocal.enabled }}
{{- .Values.firehoseLocal.deliveryStream }}
{{- end }}
{{- end }}

{{/* The AWS endpoint override: explicit value, else firehose-local when enabled. */}}
{{- define "ingest.endpointUrl" -}}
{{- if .Values.config.endpointUrl }}
{{- .Values.config.endpointUrl }}
{{- else if .Values.firehoseLocal.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "ingest.firehoseLocalName" .) (include "ingest.namespace" .) (int .Values.firehoseLocal.port) }}
{{- end }}
{{- end }}

{{/* The drain budget the pod must be given: preStop pause + readiness delay + drain + 10 s margin. */}}
{{- define "ingest.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.preStopSleepSeconds .Values.config.shutdownDelaySecs .Values.config.shutdownGraceSecs }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than preStopSleepSeconds + config.shutdownDelaySecs + config.shutdownGraceSecs (%d), or the kubelet kills pods mid-drain; raise it or set 0 to derive it" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add $needed 10 }}
{{- end }}
{{- end }}

{{/* Fail early on values that cannot work. */}}
{{- define "ingest.validate" -}}
{{- if and (not .Values.config.deliveryStream) (not .Values.firehoseLocal.enabled) }}
{{- fail "config.deliveryStream is required: set it to the Firehose delivery stream name (Terraform output delivery_stream_name), or enable firehoseLocal for development" }}
{{- end }}
{{- if and .Values.apiKeys.enabled (not .Values.apiKeys.existingSecret) (not .Values.apiKeys.keys) }}
{{- fail "apiKeys: set apiKeys.existingSecret (recommended) or apiKeys.keys, or set apiKeys.enabled=false to accept requests without a key" }}
{{- end }}
{{- if lt (int64 .Values.config.maxInflightBytes) (int64 .Values.config.maxBodyBytes) }}
{{- fail (printf "config.maxInflightBytes (%d) must be at least config.maxBodyBytes (%d) so one full request fits" (int64 .Values.config.maxInflightBytes) (int64 .Values.config.maxBodyBytes)) }}
{{- end }}
{{- range .Values.ingress.paths }}
{{- $adminPath := or (hasPrefix "/metrics" .path) (hasPrefix "/healthz" .path) (hasPrefix "/readyz" .path) }}
{{- $coversMetrics := and (ne .pathType "Exact") (hasPrefix .path "/metrics") }}
{{- if or $adminPath $coversMetrics }}
{{- fail (printf "ingress.paths: %q (%s) would route /metrics or another admin path; route only the events paths (e.g. /v1/events Exact, or / Exact)" .path .pathType) }}
{{- end }}
{{- end }}
{{- end }}
