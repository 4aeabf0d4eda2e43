{{/*
The alert rules of the front door, written once. The PrometheusRule renders them, and the chart
tests render the same thing to feed `promtool check rules`, `promtool test rules` and a real
Prometheus scraping a running ingest, so what is tested is exactly what ships.

Every expression is scoped to this release's admin Service (job = its name, "<fullname>-admin", which is
the job name the prometheus-operator gives a ServiceMonitor target) and its namespace.
Thresholds come from .Values.prometheusRule.thresholds.
*/}}
{{- define "ingest.alertRules" -}}
{{- $t := .Values.prometheusRule.thresholds }}
{{- $sel := printf "job=\"%s\", namespace=\"%s\"" (include "ingest.adminServiceName" .) (include "ingest.namespace" .) }}
{{- $runbook := .Values.prometheusRule.runbookUrl }}
{{- $off := .Values.prometheusRule.disabled | default dict }}
{{- if not (index $off "IngestHighErrorRatio") }}
- alert: IngestHighErrorRatio
  expr: |-
    sum by (namespace, job) (rate(ingest_http_requests_total{ {{- $sel }}, status=~"5.."}[5m]))
      / sum by (namespace, job) (rate(ingest_http_requests_total{ {{- $sel }}}[5m]))
      > {{ $t.errorRatio }}
    and sum by (namespace, job) (rate(ingest_http_requests_total{ {{- $sel }}}[5m]))
      >= {{ $t.minRequestsPerSecond }}
  for: 5m
  labels:
    severity: critical
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "More than {{ mulf $t.errorRatio 100 }}% of requests to ingest fail with 5xx."
    description: "{{`{{ $value | humanizePercentage }}`}} of requests to {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} were answered with 5xx over the last 5 minutes."
    runbook_url: {{ printf "%s#ingesthigherrorratio" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestHighLatencyP99") }}
- alert: IngestHighLatencyP99
  expr: |-
    histogram_quantile(0.99, sum by (namespace, job, le) (rate(ingest_http_request_duration_seconds_bucket{ {{- $sel }}, status_class!="4xx"}[5m])))
      > {{ $t.latencyP99Seconds }}
  for: 10m
  labels:
    severity: warning
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "ingest p99 latency is above {{ $t.latencyP99Seconds }}s."
    description: "The 99th percentile of request latency of {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} is {{`{{ $value | humanizeDuration }}`}} (4xx answers, 408 and 499 among them, left out: their time is the client's)."
    runbook_url: {{ printf "%s#ingesthighlatencyp99" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestFirehoseFailures") }}
- alert: IngestFirehoseFailures
  expr: |-
    sum by (namespace, job) (rate(ingest_firehose_put_batch_calls_total{ {{- $sel }}, outcome=~"error|partial"}[5m]))
      / sum by (namespace, job) (rate(ingest_firehose_put_batch_calls_total{ {{- $sel }}}[5m]))
      > {{ $t.firehoseFailureRatio }}
  for: 5m
  labels:
    severity: warning
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "Many PutRecordBatch calls to Firehose fail or fail partly."
    description: "{{`{{ $value | humanizePercentage }}`}} of PutRecordBatch calls from {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} had an error or refused records over the last 5 minutes."
    runbook_url: {{ printf "%s#ingestfirehosefailures" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestFirehoseRecordsUnaccepted") }}
- alert: IngestFirehoseRecordsUnaccepted
  expr: |-
    sum by (namespace, job) (increase(ingest_firehose_records_unaccepted_total{ {{- $sel }}}[5m]))
      > 0
  for: 0m
  labels:
    severity: warning
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "Firehose did not accept events within the retry budget; clients got 503."
    description: "{{`{{ $value | humanize }}`}} records from {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} were answered as not accepted (503) in the last 5 minutes: still refused by Firehose when the retry budget ran out, not sent before their request's deadline, or refused for good. Clients that do not retry lose them."
    runbook_url: {{ printf "%s#ingestfirehoserecordsunaccepted" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestFirehoseUnacceptedRatio") }}
- alert: IngestFirehoseUnacceptedRatio
  expr: |-
    sum by (namespace, job) (rate(ingest_firehose_records_unaccepted_total{ {{- $sel }}}[5m]))
      / (
        sum by (namespace, job) (rate(ingest_firehose_records_unaccepted_total{ {{- $sel }}}[5m]))
        + sum by (namespace, job) (rate(ingest_events_accepted_total{ {{- $sel }}}[5m]))
      )
      > {{ $t.unacceptedRatio }}
  for: 5m
  labels:
    severity: critical
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "More than {{ mulf $t.unacceptedRatio 100 }}% of events are answered as not accepted (503)."
    description: "{{`{{ $value | humanizePercentage }}`}} of the events sent to {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} were answered as not accepted (503) over the last 5 minutes: Firehose refuses or does not answer. Clients that do not retry lose them."
    runbook_url: {{ printf "%s#ingestfirehoseunacceptedratio" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestLoadShedding") }}
- alert: IngestLoadShedding
  expr: |-
    sum by (namespace, job) (rate(ingest_requests_rejected_total{ {{- $sel }}, reason="shed"}[5m]))
      > {{ $t.shedPerSecond }}
  for: 5m
  labels:
    severity: warning
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "ingest is shedding load (in-flight bytes at the cap)."
    description: "{{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} sheds {{`{{ $value | humanize }}`}} requests per second with 503."
    runbook_url: {{ printf "%s#ingestloadshedding" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestLogWriteErrors") }}
- alert: IngestLogWriteErrors
  expr: |-
    sum by (namespace, job) (increase(ingest_log_write_errors_total{ {{- $sel }}}[10m]))
      >= {{ $t.logWriteErrors }}
  for: 5m
  labels:
    severity: warning
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "ingest cannot write its log lines; access-log lines are being lost."
    description: "{{`{{ $value | humanize }}`}} writes of log lines to stdout failed in {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} over the last 10 minutes."
    runbook_url: {{ printf "%s#ingestlogwriteerrors" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestLogLinesDropped") }}
- alert: IngestLogLinesDropped
  expr: |-
    sum by (namespace, job) (increase(ingest_log_lines_dropped_total{ {{- $sel }}}[10m]))
      >= {{ $t.logLinesDropped }}
  for: 5m
  labels:
    severity: warning
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "ingest's stdout is not keeping up; log lines are being dropped."
    description: "{{`{{ $value | humanize }}`}} log lines of {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} were dropped over the last 10 minutes: the log queue was full (stdout stalled or slower than the lines). Requests are still served."
    runbook_url: {{ printf "%s#ingestloglinesdropped" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestApiKeyFileUnusable") }}
- alert: IngestApiKeyFileUnusable
  expr: |-
    sum by (namespace, job) (increase(ingest_api_key_file_errors_total{ {{- $sel }}}[10m]))
      >= {{ $t.apiKeyFileErrors }}
  for: 5m
  labels:
    severity: warning
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "ingest cannot use its changed API-key file; the previous keys stay in force."
    description: "{{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} looked {{`{{ $value | humanize }}`}} times in the last 10 minutes at a changed API-key file it cannot read or parse: keys being rotated in are refused (401), keys being removed still work."
    runbook_url: {{ printf "%s#ingestapikeyfileunusable" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestNoTraffic") }}
- alert: IngestNoTraffic
  expr: |-
    sum by (namespace, job) (rate(ingest_events_accepted_total{ {{- $sel }}}[{{ $t.noTrafficFor }}]))
      <= {{ $t.minEventsPerSecond }}
  for: 5m
  labels:
    severity: warning
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "ingest accepted no events for {{ $t.noTrafficFor }}."
    description: "{{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} accepted {{`{{ $value | humanize }}`}} events per second over the last {{ $t.noTrafficFor }}."
    runbook_url: {{ printf "%s#ingestnotraffic" $runbook | quote }}
{{- end }}
{{- if not (index $off "IngestPodsDown") }}
- alert: IngestPodsDown
  expr: |-
    (
      sum by (namespace, job) (ingest_ready{ {{- $sel }}})
      or sum by (namespace, job) (up{ {{- $sel }}}) * 0
    ) < {{ $t.minReadyPods }}
    or absent(up{ {{- $sel }}})
  for: 5m
  labels:
    severity: critical
    {{- with $.Values.prometheusRule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: "Fewer than {{ $t.minReadyPods }} ingest pods are ready."
    description: "{{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} has fewer than {{ $t.minReadyPods }} ready pods, or Prometheus has no target for it at all."
    runbook_url: {{ printf "%s#ingestpodsdown" $runbook | quote }}
{{- end }}
{{- with .Values.prometheusRule.additionalRules }}
{{ toYaml . }}
{{- end }}
{{- end }}
