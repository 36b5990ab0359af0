{{- define "scanlogin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "scanlogin.labels" -}}
app.kubernetes.io/name: scanlogin
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: pass (list $ "push-server"). */}}
{{- define "scanlogin.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: scanlogin
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Environment shared by both services: credentials and Redis. */}}
{{- define "scanlogin.commonEnv" -}}
- name: WECHAT_APPID
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.wechat.name }}, key: {{ .Values.secrets.wechat.appIDKey }}}
- name: WECHAT_SECRET
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.wechat.name }}, key: {{ .Values.secrets.wechat.secretKey }}}
- name: GRPC_AUTH_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.grpcAuthToken.name }}, key: {{ .Values.secrets.grpcAuthToken.key }}}
{{- if .Values.secrets.redisURL.name }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.redisURL.name }}, key: {{ .Values.secrets.redisURL.key }}}
{{- else if .Values.redisURL }}
- name: REDIS_URL
  value: {{ .Values.redisURL | quote }}
{{- end }}
{{- end -}}
