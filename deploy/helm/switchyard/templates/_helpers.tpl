{{/* Names and labels shared by the chart's templates. */}}

{{- define "switchyard.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "switchyard.labels" -}}
{{ include "switchyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Secret with the token hashes: an existing one, or the chart's. */}}
{{- define "switchyard.tokenSecret" -}}
{{- if .Values.tokenHashes.existingSecret -}}
{{- .Values.tokenHashes.existingSecret -}}
{{- else if not .Values.tokenHashes.values -}}
{{- fail "set tokenHashes.existingSecret (a Secret of token hashes) or tokenHashes.values" -}}
{{- else -}}
{{- printf "%s-token-hashes" (include "switchyard.fullname" .) -}}
{{- end -}}
{{- end -}}
