{{- define "space-dra.name" -}}
{{ .Values.nameOverride | default "space-dra" | trunc 40 | trimSuffix "-" }}
{{- end -}}

{{/* Prefix of every object name. 50 characters leave room for suffixes such as
"-namespace-config" within the 63 a label value (and a DaemonSet's pods) allow. */}}
{{- define "space-dra.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{ .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else -}}
{{- $name := include "space-dra.name" . -}}
{{- if contains $name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- end -}}

{{- define "space-dra.labels" -}}
app.kubernetes.io/name: {{ include "space-dra.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An object's metadata.annotations (commonAnnotations), or nothing. Use after labels:
  {{- include "space-dra.annotations" . | nindent 2 }} */}}
{{- define "space-dra.annotations" -}}
{{- with .Values.commonAnnotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "space-dra.selector" -}}
app.kubernetes.io/name: {{ include "space-dra.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* A pod template's labels: the selector's, the component's and commonLabels. */}}
{{- define "space-dra.podLabels" -}}
{{ include "space-dra.selector" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "space-dra.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "space-dra.deviceClassName" -}}
{{ .Values.deviceClass.name | default .Values.driverName }}
{{- end -}}

{{/*
The extended resource the DeviceClass names (empty: none). DRAExtendedResource is beta and
on by default from Kubernetes 1.36 (GA in 1.37); before, `auto` leaves it off.
*/}}
{{- define "space-dra.extendedResourceName" -}}
{{- $name := .Values.deviceClass.extendedResourceName -}}
{{- if eq $name "auto" -}}
{{- if semverCompare ">=1.36.0-0" .Capabilities.KubeVersion.Version -}}{{ printf "%s/namespace" .Values.driverName }}{{- end -}}
{{- else -}}
{{- $name -}}
{{- end -}}
{{- end -}}

{{/* Every resource name a pod's containers can ask for a device of the class by: the one
above, and the implicit deviceclass.resource.kubernetes.io/<class> where the feature is on. */}}
{{- define "space-dra.extendedResourceNames" -}}
{{- $names := list (printf "deviceclass.resource.kubernetes.io/%s" (include "space-dra.deviceClassName" .)) -}}
{{- with include "space-dra.extendedResourceName" . }}{{ $names = prepend $names . }}{{ end -}}
{{- toJson $names -}}
{{- end -}}

{{/* A component's ServiceAccount name: its own, or the one the user brings. */}}
{{- define "space-dra.serviceAccountName" -}}
{{- $account := index .root.Values .component "serviceAccount" -}}
{{- if $account.create -}}
{{ $account.name | default (printf "%s-%s" (include "space-dra.fullname" .root) .suffix) }}
{{- else -}}
{{ required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false: the chart binds its RBAC to that name" .component .component) $account.name }}
{{- end -}}
{{- end -}}

{{- define "space-dra.controllerServiceAccount" -}}{{ include "space-dra.serviceAccountName" (dict "root" . "component" "controller" "suffix" "controller") }}{{- end -}}
{{- define "space-dra.pluginServiceAccount" -}}{{ include "space-dra.serviceAccountName" (dict "root" . "component" "kubeletPlugin" "suffix" "kubelet-plugin") }}{{- end -}}
{{- define "space-dra.tokenMinterRole" -}}{{ include "space-dra.fullname" . }}-token-minter{{- end -}}

{{/* Every ClusterRole a claim may bind: what the controller needs "bind" on. */}}
{{- define "space-dra.bindableRoles" -}}
{{- $roles := concat .Values.policy.allowedRoles (list .Values.defaults.role (include "space-dra.tokenMinterRole" .)) | uniq -}}
{{- toJson $roles -}}
{{- end -}}

{{- define "space-dra.common-env" -}}
- name: DRIVER_NAME
  value: {{ .Values.driverName | quote }}
- name: SPACE_DRA_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: SPACE_DRA_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{- define "space-dra.attributes" -}}
{{- $items := list -}}
{{- range $name, $value := .Values.pool.attributes -}}
{{- $items = append $items (printf "%s=%v" $name $value) -}}
{{- end -}}
{{- join "," $items -}}
{{- end -}}

{{- define "space-dra.ownershipSecret" -}}
{{ .Values.ownershipKey.existingSecret | default (printf "%s-ownership" (include "space-dra.fullname" .)) }}
{{- end -}}

{{/* Environment, mount and volume for the installation's policy (templates/policy.yaml). */}}
{{- define "space-dra.policy-env" -}}
- name: SPACE_DRA_POLICY_FILE
  value: /etc/space-dra/policy/policy.yaml
{{- end -}}
{{- define "space-dra.policy-mount" -}}
- name: policy
  mountPath: /etc/space-dra/policy
  readOnly: true
{{- end -}}
{{- define "space-dra.policy-volume" -}}
- name: policy
  configMap:
    name: {{ include "space-dra.fullname" . }}-policy
{{- end -}}
{{- define "space-dra.policy-checksum" -}}
checksum/policy: {{ toYaml .Values.policy | sha256sum }}
{{- end -}}

{{/* A map of labels as the k=v,... a selector flag takes. */}}
{{- define "space-dra.labelList" -}}
{{- $items := list -}}
{{- range $key, $value := . -}}
{{- $items = append $items (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $items -}}
{{- end -}}
