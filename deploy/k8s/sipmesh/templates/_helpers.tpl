{{/* The services, in start order (src/sipmesh/services.py). */}}
{{- define "sipmesh.services" -}}
registrar router media cdr edge
{{- end -}}

{{- define "sipmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sipmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sipmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sipmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sipmesh
{{- end -}}

{{/* Selector labels of one service: (dict "root" $ "svc" "edge") */}}
{{- define "sipmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sipmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "sipmesh.componentLabels" -}}
{{ include "sipmesh.labels" .root }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "sipmesh.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "sipmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sipmesh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The NATS chart's fullname when it is a dependency. */}}
{{- define "sipmesh.natsFullname" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- .Values.nats.fullnameOverride -}}
{{- else if contains "nats" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-nats" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The NATS URL(s), credentials included. nats-py takes them from the URL as they
     are (no percent-decoding), so they go in raw; the schema keeps out the
     characters that would end the URL's authority part or split the list. */}}
{{- define "sipmesh.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc:4222" (include "sipmesh.natsFullname" .) .Release.Namespace -}}
{{- else -}}
{{- $ext := .Values.externalNats -}}
{{- $userinfo := "" -}}
{{- if $ext.token -}}
{{- $userinfo = $ext.token -}}
{{- else if $ext.user -}}
{{- $userinfo = printf "%s:%s" $ext.user $ext.password -}}
{{- end -}}
{{- $urls := list -}}
{{- range splitList "," $ext.url -}}
{{- $u := trim . -}}
{{- if $u -}}
{{- if $userinfo -}}
{{- $parts := regexSplit "://" $u 2 -}}
{{- $u = printf "%s://%s@%s" (index $parts 0) $userinfo (last $parts) -}}
{{- end -}}
{{- $urls = append $urls $u -}}
{{- end -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
{{- end -}}

{{/* JetStream replicas for the buckets and streams the services create:
     nats.jetstreamReplicas, else 3 when the NATS dependency runs a cluster of
     3 or more, else 1; externalNats.jetstreamReplicas with an external NATS. */}}
{{- define "sipmesh.jetstreamReplicas" -}}
{{- if .Values.nats.enabled -}}
{{- $cluster := dig "config" "cluster" dict .Values.nats -}}
{{- if .Values.nats.jetstreamReplicas -}}
{{- .Values.nats.jetstreamReplicas | int -}}
{{- else if and $cluster.enabled (ge (int (default 1 $cluster.replicas)) 3) -}}
3
{{- else -}}
1
{{- end -}}
{{- else -}}
{{- default 1 .Values.externalNats.jetstreamReplicas | int -}}
{{- end -}}
{{- end -}}

{{- define "sipmesh.natsSecretName" -}}
{{- if and (not .Values.nats.enabled) .Values.externalNats.existingSecret -}}
{{- .Values.externalNats.existingSecret -}}
{{- else -}}
{{- printf "%s-nats" (include "sipmesh.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "sipmesh.natsSecretKey" -}}
{{- if and (not .Values.nats.enabled) .Values.externalNats.existingSecret -}}
{{- .Values.externalNats.existingSecretKey -}}
{{- else -}}
url
{{- end -}}
{{- end -}}

{{- define "sipmesh.nonceSecretName" -}}
{{- default (printf "%s-registrar" (include "sipmesh.fullname" .)) .Values.registrar.nonceSecret.existingSecret -}}
{{- end -}}

{{- define "sipmesh.cdrSecretName" -}}
{{- default (printf "%s-cdr" (include "sipmesh.fullname" .)) .Values.cdr.store.existingSecret -}}
{{- end -}}

{{/* True ("true") when the CDR store is PostgreSQL, from a value or a Secret. */}}
{{- define "sipmesh.cdrExternalStore" -}}
{{- if or .Values.cdr.store.url .Values.cdr.store.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The advertised SIP host. */}}
{{- define "sipmesh.advertisedAddress" -}}
{{- default .Values.domain .Values.edge.advertisedAddress -}}
{{- end -}}

{{/* The configuration file of one service: (dict "root" $ "svc" "edge") */}}
{{- define "sipmesh.config" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $base := dict "http" (dict "host" "0.0.0.0" "port" (int $v.httpPort)) -}}
{{- if eq .svc "edge" -}}
{{- $sip := printf "0.0.0.0:%d" (int $v.edge.sipPort) -}}
{{- $streams := dict "tcp" (list $sip) -}}
{{- if $v.edge.tls.enabled -}}
{{- $_ := set $streams "tls" (list (printf "0.0.0.0:%d" (int $v.edge.tls.port))) -}}
{{- $_ := set $streams "cert_file" "/etc/sipmesh/tls/tls.crt" -}}
{{- $_ := set $streams "key_file" "/etc/sipmesh/tls/tls.key" -}}
{{- end -}}
{{- if $v.edge.ws.enabled -}}
{{- $_ := set $streams "ws" (list (printf "0.0.0.0:%d" (int $v.edge.ws.port))) -}}
{{- end -}}
{{- $_ := set $base "udp" (list $sip) -}}
{{- $_ := set $base "streams" $streams -}}
{{- $_ := set $base "advertised_hosts" (uniq (list (include "sipmesh.advertisedAddress" $root) $v.domain)) -}}
{{- /* The registrars' 401 answered at the edge: their section and (env) nonce secret. */ -}}
{{- $_ := set $base "challenge_registers" true -}}
{{- $_ := set $base "registrar" (mustMergeOverwrite (dict "domain" $v.domain) (deepCopy $v.registrar.settings)) -}}
{{- $base = mustMergeOverwrite $base (deepCopy $v.edge.settings) -}}
{{- else if eq .svc "registrar" -}}
{{- $_ := set $base "registrar" (mustMergeOverwrite (dict "domain" $v.domain) (deepCopy $v.registrar.settings)) -}}
{{- else if eq .svc "router" -}}
{{- $section := dict "domain" $v.domain "advertised_host" (include "sipmesh.advertisedAddress" $root) -}}
{{- $_ := set $base "router" (mustMergeOverwrite $section (deepCopy $v.router.settings)) -}}
{{- else if eq .svc "media" -}}
{{- $_ := set $base "media" (mustMergeOverwrite (dict "instances" $v.media.rtpengine) (deepCopy $v.media.settings)) -}}
{{- else if eq .svc "cdr" -}}
{{- $section := dict "api_host" "0.0.0.0" "api_port" (int $v.cdr.apiPort) -}}
{{- $_ := set $base "cdr" (mustMergeOverwrite $section (deepCopy $v.cdr.settings)) -}}
{{- $_ := set $base "data_dir" "/data" -}}
{{- end -}}
{{- toYaml $base -}}
{{- end -}}
