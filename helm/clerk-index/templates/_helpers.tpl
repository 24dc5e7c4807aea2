{{- define "clerk-index.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "clerk-index.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "clerk-index.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clerk-index.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "clerk-index.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "clerk-index.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "clerk-index.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "clerk-index.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "clerk-index.secretName" -}}
{{- default (include "clerk-index.fullname" .) .Values.secret.name -}}
{{- end -}}

{{- define "clerk-index.image" -}}
{{- $repository := required "image.repository is not set, and there is no public image yet: build and push one from a clone of the repository (docker build -t registry.example.com/clerk-index:0.1.0 . && docker push registry.example.com/clerk-index:0.1.0), then set image.repository=registry.example.com/clerk-index (README, Container image)" .Values.image.repository -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* One egress rule: TCP to the destination's ports, to its peers (any peer when none). */}}
{{- define "clerk-index.egressRule" -}}
- ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
