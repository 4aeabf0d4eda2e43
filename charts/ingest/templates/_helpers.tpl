{{/*
Names, labels and small computed values shared by every template.
*/}}

{{/* Chart name, truncated to the 63 characters DNS labels allow. */}}
{{- define "ingest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{/* The admin Service's name, which is also the Prometheus job of the scrape (the alerts select
it): the full name cut to 57 characters, so the "-admin" suffix keeps it within Kubernetes'
63. */}}
{{- define "ingest.adminServiceName" -}}
{{- printf "%s-admin" (include "ingest.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/* The JSON Schema ConfigMap's name, within 63 characters like the others. */}}
{{- define "ingest.schemaConfigMapName" -}}
{{- printf "%s-schema" (include "ingest.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

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
{{- default (printf "%s-api-keys" (include "ingest.fullname" . | trunc 54 | trimSuffix "-")) .Values.apiKeys.existingSecret }}
{{- end }}

{{/* Name of the in-cluster firehose-local (development only). */}}
{{- define "ingest.firehoseLocalName" -}}
{{- printf "%s-firehose-local" (include "ingest.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}

{{/* The delivery stream ingest writes to. */}}
{{- define "ingest.deliveryStream" -}}
{{- if .Values.config.deliveryStream }}
{{- .Values.config.deliveryStream }}
{{- else if .Values.firehoseLocal.enabled }}
{{- .Values.firehoseLocal.deliveryStream }}
{{- end }}
{{- end }}

{{/* The AWS region: explicit value, else us-east-1 for firehose-local (which serves any region,
but the SDK needs one). */}}
{{- define "ingest.region" -}}
{{- if .Values.config.region }}
{{- .Values.config.region }}
{{- else if .Values.firehoseLocal.enabled }}
{{- "us-east-1" }}
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

{{/* Seconds added to the drain in the derived terminationGracePeriodSeconds: after the drain,
ingest still waits up to 2 s for admin connections and then shuts telemetry down (a final OTLP
export, which the OpenTelemetry SDK waits up to 5 s for), so the margin must be longer than
that; 15 s leaves room. */}}
{{- define "ingest.terminationGraceMargin" -}}
15
{{- end }}

{{/* The drain budget the pod must be given: preStop pause + readiness delay + drain + margin. */}}
{{- define "ingest.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.preStopSleepSeconds .Values.config.shutdownDelaySecs .Values.config.shutdownGraceSecs }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- /* After the drain ingest waits up to 2 s (ADMIN_DRAIN) for admin connections. */}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int (add $needed 2)) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than preStopSleepSeconds + config.shutdownDelaySecs + config.shutdownGraceSecs + 2 s for the admin listener (%d), or the kubelet kills pods mid-drain; with trace export on, allow 5 s more for the final export; raise it or set 0 to derive it" (int .Values.terminationGracePeriodSeconds) (int (add $needed 2))) }}
{{- end }}
{{- .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add $needed (include "ingest.terminationGraceMargin" . | int) }}
{{- end }}
{{- end }}

{{/* A duration value (the forms values.schema.json allows and ingest parses: `250ms`, `10s`,
`2m`, or a bare number of seconds; decimals allowed) in milliseconds, as text: wrap the include
in float64. */}}
{{- define "ingest.durationMs" -}}
{{- $text := toString . | trim }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $text }}
{{- $unit := trimPrefix $number $text }}
{{- if not $number }}
{{- fail (printf "%q is not a duration: use e.g. 250ms, 10s or 2m" $text) }}
{{- else if eq $unit "ms" }}
{{- float64 $number }}
{{- else if or (eq $unit "s") (eq $unit "") }}
{{- mulf $number 1000 }}
{{- else if eq $unit "m" }}
{{- mulf $number 60000 }}
{{- else }}
{{- fail (printf "%q is not a duration: use e.g. 250ms, 10s or 2m" $text) }}
{{- end }}
{{- end }}

{{/* A Prometheus duration (`30s`, `1m30s`, `250ms`: the form values.schema.json allows for the
ServiceMonitor's interval and timeout) in milliseconds, as text: wrap the include in float64. */}}
{{- define "ingest.promDurationMs" -}}
{{- $text := toString . | trim }}
{{- /* Prometheus takes each unit at most once, largest first (model.ParseDuration); every part
is optional, so the empty text is refused on its own. */}}
{{- if not (and $text (regexMatch "^([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$" $text)) }}
{{- fail (printf "%q is not a Prometheus duration: use e.g. 30s, 1m or 1m30s (each unit at most once, largest first)" $text) }}
{{- end }}
{{- $scale := dict "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 "d" 86400000.0 "w" 604800000.0 "y" 31536000000.0 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" $text -1 }}
{{- $number := regexFind "^[0-9]+" . }}
{{- $total = addf $total (mulf (float64 $number) (get $scale (trimPrefix $number .))) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
A Kubernetes memory quantity (`512Mi`, `1Gi`, `1.5G`, `268435456`) in bytes, as a float; fails
on a form it does not read (an exponent, `m`).
*/}}
{{- define "ingest.quantityBytes" -}}
{{- if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) }}
{{- /* A bare number in a values file (YAML reads 1073741824 as a float). */}}
{{- printf "%.0f" (float64 .) }}
{{- else }}
{{- $q := toString . }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$" $q) }}
{{- fail (printf "resources.limits.memory %q: write it as a number with an optional Ki, Mi, Gi, Ti, k, M, G or T suffix" $q) }}
{{- end }}
{{- $number := regexReplaceAll "[^0-9.]+$" $q "" | float64 }}
{{- $unit := regexReplaceAll "^[0-9.]+" $q "" }}
{{- $scale := get (dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0) $unit }}
{{- printf "%.0f" (mulf $number $scale) }}
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
{{- if eq (int .Values.ports.http) (int .Values.ports.admin) }}
{{- fail (printf "ports.http and ports.admin are both %d: the second listener could not bind and the pod would crash-loop; give them different ports" (int .Values.ports.http)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d): the API server refuses such a HorizontalPodAutoscaler" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- if lt (int64 .Values.config.maxInflightBytes) (int64 .Values.config.maxBodyBytes) }}
{{- fail (printf "config.maxInflightBytes (%d) must be at least config.maxBodyBytes (%d) so one full request fits" (int64 .Values.config.maxInflightBytes) (int64 .Values.config.maxBodyBytes)) }}
{{- end }}
{{- with (dig "limits" "memory" "" .Values.resources) }}
{{- /* Measured by scripts/mem-ingest.sh: under overload the peak RSS reaches 1.3-1.7 times the
in-flight cap above an idle 18 MiB for caps of 128 MiB and more, up to 3 times for a 32 MiB cap
(per-connection buffers and the allocator's retained pages are not counted in the cap). */}}
{{- $limit := include "ingest.quantityBytes" . | float64 }}
{{- $cap := float64 $.Values.config.maxInflightBytes }}
{{- $needed := addf (mulf 2 $cap) 67108864 }}
{{- if lt $limit $needed }}
{{- fail (printf "resources.limits.memory (%v) is below 2 x config.maxInflightBytes + 64 MiB = %.0f MiB: under overload ingest's memory reaches up to 1.7 times its in-flight cap above 18 MiB (scripts/mem-ingest.sh), so the pod would be OOM-killed instead of shedding load; raise the limit or lower config.maxInflightBytes (clients that send large compressed bodies need up to 4 x the cap + 64 MiB: services/ingest/README.md, Sizing)" . (divf $needed 1048576)) }}
{{- end }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) .Values.serviceAccount.roleArn }}
{{- fail (printf "serviceAccount.roleArn (%s) is set but serviceAccount.create is false, so the chart would not annotate any ServiceAccount with it: annotate your ServiceAccount %q with eks.amazonaws.com/role-arn yourself and unset roleArn, or set serviceAccount.create=true" .Values.serviceAccount.roleArn (include "ingest.serviceAccountName" .)) }}
{{- end }}
{{- include "ingest.validateDurations" . }}
{{- if and .Values.autoscaling.enabled (not (dig "requests" "cpu" "" .Values.resources)) }}
{{- fail "autoscaling.enabled needs resources.requests.cpu: the autoscaler scales on CPU utilization, a share of the request, and without one it cannot compute it and never scales" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not .Values.serviceMonitor.enabled) }}
{{- fail (printf "prometheusRule.enabled needs serviceMonitor.enabled: the alerts select job=\"%s\", the job name the chart's ServiceMonitor gives the scrape; without it IngestPodsDown fires forever and no other alert can fire" (include "ingest.adminServiceName" .)) }}
{{- end }}
{{- if .Values.serviceMonitor.enabled }}
{{- $interval := include "ingest.promDurationMs" .Values.serviceMonitor.interval | float64 }}
{{- if gt (include "ingest.promDurationMs" .Values.serviceMonitor.scrapeTimeout | float64) $interval }}
{{- fail (printf "serviceMonitor.scrapeTimeout (%s) is longer than serviceMonitor.interval (%s): prometheus-operator skips such a ServiceMonitor (\"scrapeTimeout greater than scrapeInterval\"), so nothing would be scraped; shorten the timeout" .Values.serviceMonitor.scrapeTimeout .Values.serviceMonitor.interval) }}
{{- end }}
{{- /* The alerts take rate() and increase() over 5-minute windows, and IngestNoTraffic over
thresholds.noTrafficFor. Those need two samples in the window; with a scrape every quarter of
the window or more often, one failed or late scrape still leaves them (the usual rule of a
range at least 4 x the scrape interval). */}}
{{- if .Values.prometheusRule.enabled }}
{{- $window := float64 300000 }}
{{- $windowName := "5-minute windows" }}
{{- $noTraffic := dig "thresholds" "noTrafficFor" "" .Values.prometheusRule }}
{{- $off := .Values.prometheusRule.disabled | default dict }}
{{- if and $noTraffic (not (index $off "IngestNoTraffic")) }}
{{- $ms := include "ingest.promDurationMs" $noTraffic | float64 }}
{{- if lt $ms $window }}
{{- $window = $ms }}
{{- $windowName = printf "IngestNoTraffic's window (prometheusRule.thresholds.noTrafficFor = %s)" $noTraffic }}
{{- end }}
{{- end }}
{{- if gt (mulf $interval 4) $window }}
{{- fail (printf "serviceMonitor.interval (%s) is longer than a quarter of the alerts' shortest rate window, %s, while prometheusRule.enabled: one missed scrape would leave a window with a single sample and the alert silent; scrape more often (at most %.0fs)" .Values.serviceMonitor.interval $windowName (divf $window 4000)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled needs at least one host in ingress.hosts: an Ingress without rules or a default backend is refused by the API server" }}
{{- end }}
{{- range .Values.ingress.paths }}
{{- $adminPath := or (hasPrefix "/metrics" .path) (hasPrefix "/healthz" .path) (hasPrefix "/readyz" .path) }}
{{- $coversMetrics := and (ne .pathType "Exact") (hasPrefix .path "/metrics") }}
{{- if or $adminPath $coversMetrics }}
{{- fail (printf "ingress.paths: %q (%s) would route /metrics or another admin path; route only the events paths (e.g. /v1/events Exact, or / Exact)" .path .pathType) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The start-up rules ingest enforces between durations (services/ingest/src/config.rs,
Config::validate), checked here so a combination ingest refuses fails the install instead of
crash-looping the pods. Same order and the same comparisons as ingest. */}}
{{- define "ingest.validateDurations" -}}
{{- $c := .Values.config }}
{{- $linger := include "ingest.durationMs" $c.linger | float64 }}
{{- $budget := include "ingest.durationMs" $c.retryBudget | float64 }}
{{- $call := include "ingest.durationMs" $c.firehoseCallTimeout | float64 }}
{{- $timeout := include "ingest.durationMs" $c.requestTimeout | float64 }}
{{- $zero := float64 0 }}
{{- /* Every duration at most 7 days (ingest's MAX_DURATION, services/ingest/src/config.rs);
all but linger and retryBudget also above 0. */}}
{{- range $key := list "linger" "retryBudget" "firehoseCallTimeout" "requestTimeout" "apiKeysReload" "readinessInterval" }}
{{- $ms := include "ingest.durationMs" (index $c $key) | float64 }}
{{- if and (le $ms $zero) (not (has $key (list "linger" "retryBudget"))) }}
{{- fail (printf "config.%s (%s) must be greater than 0" $key (index $c $key)) }}
{{- end }}
{{- if gt $ms (float64 604800000) }}
{{- fail (printf "config.%s (%s) is longer than 7 days (10080m), the longest duration ingest takes; ingest refuses to start otherwise" $key (index $c $key)) }}
{{- end }}
{{- end }}
{{- /* INGEST_READINESS_INTERVAL >= 1 s: each pod calls DescribeDeliveryStream once per interval,
and AWS allows 5 such calls per second per account and region. */}}
{{- if lt (include "ingest.durationMs" $c.readinessInterval | float64) (float64 1000) }}
{{- fail (printf "config.readinessInterval (%s) must be at least 1s: each pod calls DescribeDeliveryStream once per interval, and AWS allows 5 calls per second per account and region; ingest refuses to start otherwise" $c.readinessInterval) }}
{{- end }}
{{- if lt (include "ingest.durationMs" $c.apiKeysReload | float64) (float64 1000) }}
{{- fail (printf "config.apiKeysReload (%s) must be at least 1s; ingest refuses to start otherwise" $c.apiKeysReload) }}
{{- end }}
{{- /* INGEST_REQUEST_TIMEOUT > INGEST_RETRY_BUDGET + INGEST_FIREHOSE_CALL_TIMEOUT + 1 s */}}
{{- if le $timeout (addf $budget $call 1000) }}
{{- fail (printf "config.requestTimeout (%s) must be longer than config.retryBudget (%s) + config.firehoseCallTimeout (%s) + 1s, or requests run out of time while their records are still being retried; ingest refuses to start otherwise" $c.requestTimeout $c.retryBudget $c.firehoseCallTimeout) }}
{{- end }}
{{- /* INGEST_LINGER < INGEST_REQUEST_TIMEOUT - INGEST_FIREHOSE_CALL_TIMEOUT - 1 s */}}
{{- if ge $linger (maxf (subf $timeout $call 1000) 0) }}
{{- fail (printf "config.linger (%s) must be shorter than config.requestTimeout (%s) - config.firehoseCallTimeout (%s) - 1s, or a lone event is never sent in time; ingest refuses to start otherwise" $c.linger $c.requestTimeout $c.firehoseCallTimeout) }}
{{- end }}
{{- /* INGEST_SHUTDOWN_GRACE >= INGEST_REQUEST_TIMEOUT */}}
{{- if lt (mulf $c.shutdownGraceSecs 1000) $timeout }}
{{- fail (printf "config.shutdownGraceSecs (%d) must be at least config.requestTimeout (%s), so requests in flight at shutdown are answered before exit; ingest refuses to start otherwise" (int $c.shutdownGraceSecs) $c.requestTimeout) }}
{{- end }}
{{- /* INGEST_RATE_LIMIT_BURST needs INGEST_RATE_LIMIT_RPS > 0 (BurstWithoutRate) */}}
{{- if and $c.rateLimitBurst (not (gt (float64 $c.rateLimitRps) 0.0)) }}
{{- fail (printf "config.rateLimitBurst (%v) needs config.rateLimitRps above 0: with no rate, rate limiting is off and the burst would do nothing; ingest refuses to start otherwise" $c.rateLimitBurst) }}
{{- end }}
{{- end }}
