{{/* Chart name, overridable. */}}
{{- define "lpbyoc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: the release name alone when it already contains the chart name. */}}
{{- define "lpbyoc.fullname" -}}
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

{{- define "lpbyoc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lpbyoc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lpbyoc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lpbyoc.labels" -}}
helm.sh/chart: {{ include "lpbyoc.chart" . }}
{{ include "lpbyoc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: livepeer-byoc
{{- end }}

{{- define "lpbyoc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lpbyoc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespaces granted a Role when not watching all namespaces. */}}
{{- define "lpbyoc.watchedNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- toJson (uniq .Values.watch.namespaces) }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{- define "lpbyoc.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "lpbyoc.orchestrator.fullname" -}}
{{- printf "%s-orchestrator" (include "lpbyoc.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Cluster-scoped objects are shared by every release: the namespace keeps two releases apart. */}}
{{- define "lpbyoc.clusterName" -}}
{{- printf "%s-%s" (include "lpbyoc.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}
