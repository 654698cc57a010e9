{{/*
Names, labels and the pieces every pod shares. Every object's name and labels come from here.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "hotelchat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: the release name, with the chart name unless the release name holds it. */}}
{{- define "hotelchat.fullname" -}}
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

{{/* The name of one component's objects: (dict "ctx" $ "component" "web"). */}}
{{- define "hotelchat.componentName" -}}
{{- printf "%s-%s" (include "hotelchat.fullname" .ctx | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "hotelchat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select one component's pods: (dict "ctx" $ "component" "web"). Never the chart
version: selectors cannot change after creation. */}}
{{- define "hotelchat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hotelchat.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every label of an object of one component: (dict "ctx" $ "component" "web"). */}}
{{- define "hotelchat.labels" -}}
helm.sh/chart: {{ include "hotelchat.chart" .ctx }}
{{ include "hotelchat.selectorLabels" . }}
app.kubernetes.io/part-of: hotelchat
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (the appVersion by default). */}}
{{- define "hotelchat.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The app pods' ServiceAccount name. */}}
{{- define "hotelchat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hotelchat.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "hotelchat.operatorServiceAccountName" -}}
{{- default (include "hotelchat.componentName" (dict "ctx" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- end }}

{{/* The migration Job's name without its hash: <fullname>-migrate-<revision>. */}}
{{- define "hotelchat.migrationJobPrefix" -}}
{{- printf "%s-migrate-%d" (include "hotelchat.fullname" . | trunc 36 | trimSuffix "-") (int .Release.Revision) }}
{{- end }}

{{/* The migration Job's name: (dict "ctx" $ "pod" <its rendered pod template>). The revision
makes every upgrade a new Job; the pod's hash makes a changed pod a new Job for `kubectl apply`
of a rendering too. At most 36 + 9 + 6 + 9 characters. */}}
{{- define "hotelchat.migrationJobName" -}}
{{- printf "%s-%s" (include "hotelchat.migrationJobPrefix" .ctx) (.pod | sha256sum | trunc 8) }}
{{- end }}

{{/* The ConfigMap of one Grafana dashboard: (dict "ctx" $ "dashboard" "queue"). */}}
{{- define "hotelchat.dashboardName" -}}
{{- printf "%s-dashboard-%s" (include "hotelchat.fullname" .ctx | trunc 40 | trimSuffix "-") .dashboard | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The shared settings ConfigMap's name. */}}
{{- define "hotelchat.configName" -}}
{{- include "hotelchat.componentName" (dict "ctx" . "component" "config") }}
{{- end }}

{{/* What each secret is, for the message of a render that misses a required one. */}}
{{- define "hotelchat.secretPurpose" -}}
{{- $purpose := dict
  "DATABASE_URL" "the PostgreSQL URL of the application role"
  "DATABASE_ADMIN_URL" "the PostgreSQL URL of the schema owner, for the migration Job"
  "DATABASE_OPERATOR_URL" "the PostgreSQL URL of the operator's role"
  "REDIS_URL" "the Redis URL"
  "SECRET_KEY" "the key that signs sessions and web-chat tokens, at least 32 characters"
  "ENCRYPTION_KEYS" "the Fernet keys that encrypt Twilio auth tokens"
  "OPENAI_API_KEY" "the OpenAI API key"
  "EMBEDDINGS_API_KEY" "the embeddings API key"
  "METRICS_TOKEN" "the bearer token of /metrics"
  "S3_ACCESS_KEY_ID" "the access key id of the media bucket"
  "S3_SECRET_ACCESS_KEY" "the secret access key of the media bucket" }}
{{- index $purpose . }}
{{- end }}

{{/*
One environment variable from a secret: (dict "ctx" $ "secret" "DATABASE_URL" "required" true)
and optionally "as" "DATABASE_URL" to expose it under another variable name. An optional secret
left unset renders nothing; a required one fails the render, naming the value to set.
*/}}
{{- define "hotelchat.secretEnv" -}}
{{- $ref := index .ctx.Values.secrets .secret }}
{{- if $ref.existingSecret }}
- name: {{ default .secret .as }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.existingSecret }}
      key: {{ default .secret $ref.key }}
{{- else if .required }}
{{- fail (printf "secrets.%s.existingSecret is required: the name of a Secret holding %s under the key %s (e.g. kubectl create secret generic hotelchat-%s --from-literal=%s=...)" .secret (include "hotelchat.secretPurpose" .secret) (default .secret $ref.key) (.secret | lower | replace "_" "-") (default .secret $ref.key)) }}
{{- end }}
{{- end }}

{{/* A setting's value as the environment gets it: YAML numbers reach templates as floats, so
whole numbers are written without a fraction or exponent (1000000, not 1e+06). */}}
{{- define "hotelchat.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* Environment variables from a map of settings (name: value), sorted by name. */}}
{{- define "hotelchat.settingsEnv" -}}
{{- range $name := keys . | sortAlpha }}
{{ printf "- name: %s" $name }}
  value: {{ include "hotelchat.envValue" (index $ $name) | quote }}
{{- end }}
{{- end }}

{{/* Environment variables from secrets: (dict "ctx" $ "required" (list …) "optional" (list …)),
each list of secret names (the entries of `secrets`). */}}
{{- define "hotelchat.secretEnvs" -}}
{{- $ctx := .ctx }}
{{- $out := "" }}
{{- range .required }}
{{- $out = print $out (include "hotelchat.secretEnv" (dict "ctx" $ctx "secret" . "required" true)) }}
{{- end }}
{{- range .optional }}
{{- $out = print $out (include "hotelchat.secretEnv" (dict "ctx" $ctx "secret" .)) }}
{{- end }}
{{- $out | trimPrefix "\n" }}
{{- end }}

{{/* The variables every container of the image gets: HOME on the writable /tmp. */}}
{{- define "hotelchat.baseEnv" -}}
- name: HOME
  value: /tmp
{{- end }}

{{/* envFrom of the shared settings ConfigMap. */}}
{{- define "hotelchat.configEnvFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "hotelchat.configName" . }}
{{- end }}

{{/* Annotations that roll a pod when the shared settings change. */}}
{{- define "hotelchat.checksumAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/config-configmap.yaml") . | sha256sum }}
{{- end }}

{{/* The container security context (restricted Pod Security Standard by default). */}}
{{- define "hotelchat.securityContext" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}

{{/* The writable /tmp of every pod, and the web's multiprocess-metrics folder inside it. */}}
{{- define "hotelchat.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "hotelchat.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
The init container of the web, worker and operator pods: waits until the schema is at the code's
migration (the migration Job of the same revision moves it there). (dict "ctx" $ "secret"
"DATABASE_URL"): the secret whose URL it reads, always as DATABASE_URL; the operator's pod has no
app-role URL and gives its own (it only reads alembic_version, which both roles may read).
*/}}
{{- define "hotelchat.waitForSchema" -}}
- name: wait-for-schema
  image: {{ include "hotelchat.image" .ctx }}
  imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
  args: [wait-for-schema, --timeout, {{ .ctx.Values.waitForSchema.timeoutSeconds | quote }}]
  {{- include "hotelchat.configEnvFrom" .ctx | nindent 2 }}
  env:
    {{- include "hotelchat.baseEnv" .ctx | nindent 4 }}
    {{- include "hotelchat.secretEnv" (dict "ctx" .ctx "secret" .secret "as" "DATABASE_URL" "required" true) | trimPrefix "\n" | nindent 4 }}
  resources:
    {{- toYaml .ctx.Values.waitForSchema.resources | nindent 4 }}
  {{- include "hotelchat.securityContext" .ctx | nindent 2 }}
  volumeMounts:
    {{- include "hotelchat.tmpMount" .ctx | nindent 4 }}
{{- end }}

{{/* Scheduling fields of a pod from its component's values. */}}
{{- define "hotelchat.scheduling" -}}
{{- include "hotelchat.schedulingFields" . | trimPrefix "\n" }}
{{- end }}

{{- define "hotelchat.schedulingFields" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod-level fields every pod shares. */}}
{{- define "hotelchat.podCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The worker's grace period: the job timeout, the 20 s the worker lets running jobs finish
after SIGTERM (SHUTDOWN_GRACE_SECONDS in entrypoints/worker.py), and a margin. */}}
{{- define "hotelchat.workerGracePeriod" -}}
{{- add (ceil .Values.worker.jobTimeoutSeconds | int) 20 .Values.worker.terminationGraceMarginSeconds }}
{{- end }}

{{/* Refuse value combinations the schema also refuses, for renders that skip the schema. */}}
{{- define "hotelchat.validate" -}}
{{- if and .Values.worker.autoscaling.enabled .Values.worker.keda.enabled }}
{{- fail "worker.autoscaling.enabled and worker.keda.enabled are both true: scale the worker with one of them (KEDA creates its own HorizontalPodAutoscaler)" }}
{{- end }}
{{- if and .Values.worker.keda.enabled (not .Values.worker.keda.prometheus.serverAddress) }}
{{- fail "worker.keda.prometheus.serverAddress is required with worker.keda.enabled: the Prometheus that scrapes the workers (e.g. http://prometheus-operated.monitoring:9090)" }}
{{- end }}
{{- if .Values.networkPolicy.enabled }}
{{- range $name := list "postgresql" "redis" }}
{{- if not (index $.Values.networkPolicy $name).cidrs }}
{{- fail (printf "networkPolicy.%s.cidrs is required with networkPolicy.enabled: the address ranges of %s (without them every pod is cut off from it)" $name $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.operator.enabled (not .Values.networkPolicy.kubernetesApi.cidrs) }}
{{- fail "networkPolicy.kubernetesApi.cidrs is required with networkPolicy.enabled and operator.enabled: the Kubernetes API server's addresses (kubectl get endpoints kubernetes -n default)" }}
{{- end }}
{{- end }}

{{/* An egress rule to address ranges and TCP ports: (dict "cidrs" [...] "ports" [...]). */}}
{{- define "hotelchat.egressTo" -}}
{{- if .cidrs -}}
- to:
    {{- range .cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}
{{- end }}

{{/* Egress every pod needs: DNS, PostgreSQL, and the extra rules. */}}
{{- define "hotelchat.egressCommon" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podLabels | nindent 10 }}
  ports:
    {{- range .Values.networkPolicy.dns.ports }}
    - protocol: UDP
      port: {{ . }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- with include "hotelchat.egressTo" .Values.networkPolicy.postgresql }}
{{ . }}
{{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* An ingress rule from the monitoring namespace to a metrics port. */}}
{{- define "hotelchat.ingressFromMonitoring" -}}
- from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .ctx.Values.networkPolicy.monitoringNamespace }}
  ports:
    - protocol: TCP
      port: {{ .port }}
{{- end }}
