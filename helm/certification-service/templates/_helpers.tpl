{{/* Names, labels and shared snippets. */}}

{{- define "cs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cs.fullname" -}}
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

{{- define "cs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Pods that are not the server (the migration Job's, the `helm test` pod) carry these instead of
the selector labels, so that the Service, PodDisruptionBudget, NetworkPolicy and HPA never pick
them. The Deployment's selector stays as it was: it is immutable, and changing it would break
`helm upgrade` of every existing install. */}}
{{- define "cs.componentPodLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .context.Chart.Name .context.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: {{ include "cs.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
{{- end }}

{{- define "cs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the migration Job's own hook objects (ServiceAccount, Secret, NetworkPolicy): never
the name of a release object, so their before-hook-creation policy cannot delete anything the
running pods use. */}}
{{- define "cs.migrationsName" -}}
{{- printf "%s-migrations" (include "cs.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{/* The migration Job's ServiceAccount: a hook made before it when the chart makes service
accounts (the release's own is created only after pre-install hooks), else the operator's. */}}
{{- define "cs.migrationsServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- include "cs.migrationsName" . }}
{{- else }}
{{- include "cs.serviceAccountName" . }}
{{- end }}
{{- end }}

{{- define "cs.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret the pods read: the operator's, or the chart's. */}}
{{- define "cs.secretName" -}}
{{- default (include "cs.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The port probes and `helm test` use: gRPC itself, or the plain health port under TLS. */}}
{{- define "cs.healthPort" -}}
{{- if .Values.tls.enabled }}{{ .Values.service.healthPort }}{{ else }}{{ .Values.service.port }}{{ end }}
{{- end }}

{{/* The restricted Pod Security Standard, for every container the chart runs. */}}
{{- define "cs.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "cs.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Environment shared by the server, the migration Job and the init container. */}}
{{- define "cs.envFrom" -}}
- configMapRef:
    name: {{ include "cs.fullname" . }}
- secretRef:
    name: {{ include "cs.secretName" . }}
{{- end }}

{{/* The service refuses to serve without caller authentication (issue 13), and so does the chart:
caller tokens (a Secret key, or the chart's Secret), or mTLS, or the explicit development escape;
and with authentication, without caller permissions. */}}
{{- define "cs.requireCallerAuth" -}}
{{- $tokens := or .Values.auth.callerTokensSecret.name (and (not .Values.secrets.existingSecret) .Values.secrets.callerTokens) }}
{{- $mtls := and .Values.tls.enabled .Values.tls.mutual }}
{{- if not (or $tokens $mtls .Values.auth.allowUnauthenticated) }}
{{- fail "caller authentication is required: set auth.callerTokensSecret.name (a Secret with the key CALLER_TOKENS), or secrets.callerTokens (chart-made Secret), or tls.enabled=true with tls.mutual=true (mTLS); auth.allowUnauthenticated=true is for trusted development clusters only" }}
{{- end }}
{{- /* Default-deny (issue 29): authenticated callers get what auth.callerPermissions grants, and
the service refuses to start without it; "*" grants everything, in so many words. */}}
{{- if and (or $tokens $mtls) (not .Values.auth.callerPermissions) }}
{{- fail "auth.callerPermissions is required with caller authentication: say what each caller may call, e.g. signup=BeginVerification:SIGNUP+Verify+CheckDuplicate,deletion=Unlink (escape the comma in --set), or \"*\" to let every caller call every method" }}
{{- end }}
{{- end }}

{{/* "true" when CALLER_TOKENS comes from a Secret other than the one the pods take whole
(envFrom): mounted as CALLER_TOKENS_FILE, out of the environment. The same Secret already puts
CALLER_TOKENS in the environment, and the service refuses both at once. */}}
{{- define "cs.callerTokensAsFile" -}}
{{- $name := .Values.auth.callerTokensSecret.name }}
{{- if and $name (ne $name (include "cs.secretName" .)) }}true{{ end }}
{{- end }}

{{/* mTLS: the callers' CA comes from its own value, never the server certificate's Secret by
default: the server's issuer may sign certificates for anything. */}}
{{- define "cs.clientCaSecretName" -}}
{{- required "tls.clientCaSecret.name is required with tls.mutual: a Secret holding the CA that signs callers' certificates (it may be tls.existingSecret, named explicitly)" .Values.tls.clientCaSecret.name }}
{{- end }}

{{/* A separate migration role only where migrations run from the chart, and from a source the
migrations can read: the chart-made hook Secret exists only for the hook Job. */}}
{{- define "cs.checkMigrationsRole" -}}
{{- $mode := .Values.migrations.mode }}
{{- if and (eq $mode "none") (or .Values.migrations.databaseUrlSecret.name .Values.secrets.migrationsDatabaseUrl) }}
{{- fail "migrations.databaseUrlSecret and secrets.migrationsDatabaseUrl need migrations.mode hook or initContainer: with none the server migrates with its own DATABASE_URL" }}
{{- end }}
{{- if and (eq $mode "initContainer") .Values.secrets.migrationsDatabaseUrl (not .Values.migrations.databaseUrlSecret.name) }}
{{- fail "secrets.migrationsDatabaseUrl is for migrations.mode=hook; with initContainer name a Secret in migrations.databaseUrlSecret" }}
{{- end }}
{{- if and .Values.secrets.existingSecret .Values.secrets.migrationsDatabaseUrl }}
{{- fail "secrets.migrationsDatabaseUrl is used only without secrets.existingSecret; name a Secret in migrations.databaseUrlSecret instead" }}
{{- end }}
{{- end }}
