{{/* Names: "<release>-recsys" unless overridden; Kubernetes names stop at 63 characters. */}}
{{- define "recsys.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "recsys.fullname" -}}
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

{{- define "recsys.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "recsys.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* What the Service selects: pods of both variants (stable and canary). */}}
{{- define "recsys.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recsys.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "recsys.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recsys.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "recsys.image" -}}
{{- $root := .root -}}
{{- printf "%s:%s" $root.Values.image.repository (.tag | default $root.Values.image.tag | default $root.Chart.AppVersion) }}
{{- end }}

{{/* The platform's environment, the same in the service and the jobs. */}}
{{- define "recsys.env" -}}
- name: RECSYS_PROFILE
  value: {{ .Values.profile | quote }}
- name: RECSYS_HOME
  value: {{ .Values.workspace.path | quote }}
- name: RECSYS_FEAST_PROJECT
  value: {{ .Values.feast.project | quote }}
- name: RECSYS_PG_HOST
  value: {{ .Values.postgres.host | quote }}
- name: RECSYS_PG_PORT
  value: {{ .Values.postgres.port | quote }}
- name: RECSYS_PG_DATABASE
  value: {{ .Values.postgres.database | quote }}
- name: RECSYS_PG_SCHEMA
  value: {{ .Values.postgres.schema | quote }}
- name: RECSYS_PG_USER
  value: {{ .Values.postgres.user | quote }}
- name: RECSYS_PG_SSLMODE
  value: {{ .Values.postgres.sslmode | quote }}
{{- if .Values.postgres.passwordSecret.name }}
- name: RECSYS_PG_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgres.passwordSecret.name | quote }}
      key: {{ .Values.postgres.passwordSecret.key | quote }}
{{- end }}
- name: RECSYS_REDIS_HOST
  value: {{ .Values.redis.host | quote }}
- name: RECSYS_REDIS_PORT
  value: {{ .Values.redis.port | quote }}
- name: RECSYS_REDIS_DB
  value: {{ .Values.redis.db | quote }}
{{- if .Values.mlflow.uriSecret.name }}
- name: RECSYS_MLFLOW_URI
  valueFrom:
    secretKeyRef:
      name: {{ .Values.mlflow.uriSecret.name | quote }}
      key: {{ .Values.mlflow.uriSecret.key | quote }}
{{- end }}
{{- with .Values.mlflow.artifacts }}
- name: RECSYS_MLFLOW_ARTIFACTS
  value: {{ . | quote }}
{{- end }}
{{- range $name, $value := .Values.serve.settings }}
- name: {{ printf "RECSYS_SERVE_%s" (upper $name) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes every pod mounts: the workspace and the Feast configuration. */}}
{{- define "recsys.volumes" -}}
- name: workspace
{{- if .Values.workspace.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.workspace.persistence.existingClaim | default (printf "%s-workspace" (include "recsys.fullname" .)) }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: feast
  configMap:
    name: {{ include "recsys.fullname" . }}-feast
{{- end }}

{{- define "recsys.volumeMounts" -}}
- name: workspace
  mountPath: {{ .Values.workspace.path | quote }}
- name: feast
  mountPath: {{ printf "%s/feature_repo/profiles/production/feature_store.yaml" .Values.sourceDir | quote }}
  subPath: feature_store.yaml
  readOnly: true
{{- end }}

{{/* Pod-level settings shared by the Deployments and the jobs. */}}
{{- define "recsys.podSpec" -}}
serviceAccountName: {{ include "recsys.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
{{- toYaml . | nindent 2 }}
{{- end }}
volumes:
{{- include "recsys.volumes" . | nindent 2 }}
{{- end }}

{{/* One service Deployment; called with the root context and the variant's own values. */}}
{{- define "recsys.deployment" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "recsys.fullname" $root }}-{{ .variant }}
  labels:
    {{- include "recsys.labels" $root | nindent 4 }}
    recsys.io/variant: {{ .variant }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ .replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "recsys.selectorLabels" $root | nindent 6 }}
      recsys.io/variant: {{ .variant }}
  template:
    metadata:
      labels:
        {{- include "recsys.labels" $root | nindent 8 }}
        recsys.io/variant: {{ .variant }}
      annotations:
        checksum/feast: {{ include (print $root.Template.BasePath "/configmap-feast.yaml") $root | sha256sum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "recsys.podSpec" $root | nindent 6 }}
      containers:
        - name: recsys
          image: {{ include "recsys.image" (dict "root" $root "tag" .imageTag) | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $root.Values.serve.port }}
              protocol: TCP
          env:
            {{- include "recsys.env" $root | nindent 12 }}
            - name: RECSYS_SERVE_ALIAS
              value: {{ .alias | quote }}
            - name: BENTOML_PORT
              value: {{ $root.Values.serve.port | quote }}
          {{- with $root.Values.extraEnvFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $root.Values.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $root.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            {{- toYaml $root.Values.probes.readiness | nindent 12 }}
          resources:
            {{- toYaml $root.Values.resources | nindent 12 }}
          {{- with $root.Values.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            {{- include "recsys.volumeMounts" $root | nindent 12 }}
{{- end }}

{{/* One CronJob running `python -m recsys ARGS`; called with the root context and the job's
own values. */}}
{{- define "recsys.cronjob" -}}
{{- $root := .root -}}
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ include "recsys.fullname" $root }}-{{ .job }}
  labels:
    {{- include "recsys.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .job }}
spec:
  schedule: {{ .schedule | quote }}
  suspend: {{ .suspend }}
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: {{ $root.Values.jobs.historyLimit }}
  failedJobsHistoryLimit: {{ $root.Values.jobs.historyLimit }}
  jobTemplate:
    spec:
      backoffLimit: {{ $root.Values.jobs.backoffLimit }}
      ttlSecondsAfterFinished: {{ $root.Values.jobs.ttlSecondsAfterFinished }}
      template:
        metadata:
          labels:
            app.kubernetes.io/name: {{ include "recsys.name" $root }}
            app.kubernetes.io/instance: {{ $root.Release.Name }}
            app.kubernetes.io/component: {{ .job }}
        spec:
          restartPolicy: Never
          {{- include "recsys.podSpec" $root | nindent 10 }}
          containers:
            - name: {{ .job }}
              image: {{ include "recsys.image" (dict "root" $root "tag" "") | quote }}
              imagePullPolicy: {{ $root.Values.image.pullPolicy }}
              workingDir: {{ $root.Values.sourceDir | quote }}
              args:
                {{- toYaml (concat $root.Values.jobs.command .args) | nindent 16 }}
              env:
                {{- include "recsys.env" $root | nindent 16 }}
              {{- with $root.Values.extraEnvFrom }}
              envFrom:
                {{- toYaml . | nindent 16 }}
              {{- end }}
              resources:
                {{- toYaml .resources | nindent 16 }}
              {{- with $root.Values.securityContext }}
              securityContext:
                {{- toYaml . | nindent 16 }}
              {{- end }}
              volumeMounts:
                {{- include "recsys.volumeMounts" $root | nindent 16 }}
{{- end }}
