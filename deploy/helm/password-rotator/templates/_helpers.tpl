{{/* The chart name, or nameOverride. */}}
{{- define "password-rotator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The objects' name: fullnameOverride, or the release name (suffixed with the chart name
unless it contains it). Release "password-rotator" gives deploy/'s names. */}}
{{- define "password-rotator.fullname" -}}
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

{{- define "password-rotator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "password-rotator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Lease of leader election of the unsharded operator; a shard's is this, "-", the
shard. */}}
{{- define "password-rotator.leaseName" -}}
{{- include "password-rotator.fullname" . -}}
{{- end -}}

{{/* Every Lease of leader election, the shards' too (the leader-election Role's
resourceNames), as a YAML flow list. */}}
{{- define "password-rotator.leaseNames" -}}
{{- $lease := include "password-rotator.leaseName" . -}}
{{- $names := list ($lease | quote) -}}
{{- range .Values.shards -}}
{{- $names = append $names (printf "%s-%s" $lease . | quote) -}}
{{- end -}}
[{{ join ", " $names }}]
{{- end -}}

{{/* Fails on a shard name that the operator's --shard refuses, or a repeated one. */}}
{{- define "password-rotator.checkShards" -}}
{{- $shards := default (list) .Values.shards -}}
{{- range $shards -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" (toString .)) -}}
{{- fail (printf "shards: %q cannot name a shard: 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- if ne (len $shards) (len (uniq $shards)) -}}
{{- fail "shards: a shard is listed twice" -}}
{{- end -}}
{{- end -}}

{{/* "true" when leader election is on: explicitly, or with more than one replica. */}}
{{- define "password-rotator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{- define "password-rotator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "password-rotator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "password-rotator.labels" -}}
{{ include "password-rotator.selectorLabels" . }}
app.kubernetes.io/part-of: password-rotator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator's rules, in every watched namespace (ClusterRole or Roles). Exactly the API
calls it makes: tests/helm.rs and tests/deploy.rs check them against one expected set, and
deploy/base/clusterrole.yaml explains each. */}}
{{- define "password-rotator.rules" -}}
# PasswordRotations: list/watch (the controller), get (reconcile), patch (the finalizer).
- apiGroups: ["rotator.dev"]
  resources: ["passwordrotations"]
  verbs: ["get", "list", "watch", "patch"]
# RotationTargets: list/watch (a reflector), get.
- apiGroups: ["rotator.dev"]
  resources: ["rotationtargets"]
  verbs: ["get", "list", "watch"]
# Status of resources and targets, by server-side apply.
- apiGroups: ["rotator.dev"]
  resources: ["passwordrotations/status", "rotationtargets/status"]
  verbs: ["patch"]
# Secrets: metadata-only watch (list, watch); reads by name (get); the state Secret
# <name>-rotation (create, delete); publishing into the workload Secret (patch).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Rollout: read status, patch the restart annotation (the admission policy denies the rest).
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "patch"]
# Pods of a workload's selector, to see that no pod of an older template remains; those it
# owns count, a Deployment's through its ReplicaSets.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
# Events about PasswordRotations.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
