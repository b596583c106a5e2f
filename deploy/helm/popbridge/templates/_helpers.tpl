{{- define "popbridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "popbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "popbridge.labels" -}}
{{ include "popbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "popbridge.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "popbridge.fullname" .)) -}}
{{- end -}}

{{- define "popbridge.tlsEnabled" -}}
{{- if or .Values.pop3s.enabled (and .Values.pop3.enabled (ne .Values.pop3.tls "none")) }}true{{ end -}}
{{- end -}}

{{/* popbridge.clientCerts sets verify_client and client_ca_file on the TLS
listener given as the second element, from .Values.clientCertificates. */}}
{{- define "popbridge.clientCerts" -}}
{{- $v := (index . 0).Values.clientCertificates -}}
{{- $l := index . 1 -}}
{{- if and $v (ne $v.verify "off") -}}
{{- $_ := set $l "verify_client" $v.verify -}}
{{- if $v.caSecret -}}
{{- $_ := set $l "client_ca_file" (printf "/etc/popbridge/client-ca/%s" $v.caKey) -}}
{{- else if ne $v.verify "optional_no_ca" -}}
{{- fail "clientCertificates.caSecret is needed unless verify is off or optional_no_ca" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The popbridge configuration: .Values.config with the chart's listen,
metrics.listen, limits.drain_timeout and, from .Values.state, the state
section's server. */}}
{{- define "popbridge.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $listen := list -}}
{{- if .Values.pop3.enabled -}}
{{- $l := dict "address" (printf "0.0.0.0:%v" .Values.pop3.containerPort) "tls" .Values.pop3.tls -}}
{{- if ne .Values.pop3.tls "none" -}}
{{- $_ := set $l "cert_file" "/etc/popbridge/tls/tls.crt" -}}
{{- $_ := set $l "key_file" "/etc/popbridge/tls/tls.key" -}}
{{- $_ := set $l "min_version" .Values.tlsMinVersion -}}
{{- include "popbridge.clientCerts" (list . $l) -}}
{{- end -}}
{{- if .Values.pop3.trustedProxies -}}
{{- $_ := set $l "proxy_protocol" true -}}
{{- $_ := set $l "trusted_proxies" .Values.pop3.trustedProxies -}}
{{- end -}}
{{- $listen = append $listen $l -}}
{{- end -}}
{{- if .Values.pop3s.enabled -}}
{{- $l := dict "address" (printf "0.0.0.0:%v" .Values.pop3s.containerPort) "tls" "implicit" "cert_file" "/etc/popbridge/tls/tls.crt" "key_file" "/etc/popbridge/tls/tls.key" "min_version" .Values.tlsMinVersion -}}
{{- include "popbridge.clientCerts" (list . $l) -}}
{{- if .Values.pop3s.trustedProxies -}}
{{- $_ := set $l "proxy_protocol" true -}}
{{- $_ := set $l "trusted_proxies" .Values.pop3s.trustedProxies -}}
{{- end -}}
{{- $listen = append $listen $l -}}
{{- end -}}
{{- if not $listen -}}
{{- fail "enable pop3 or pop3s" -}}
{{- end -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- $metrics := deepCopy (get $cfg "metrics" | default dict) -}}
{{- $_ := set $metrics "listen" (printf "0.0.0.0:%v" .Values.metricsPort) -}}
{{- $_ := set $cfg "metrics" $metrics -}}
{{- $limits := deepCopy (get $cfg "limits" | default dict) -}}
{{- $_ := set $limits "drain_timeout" (printf "%vs" .Values.drainTimeoutSeconds) -}}
{{- $_ := set $cfg "limits" $limits -}}
{{- with .Values.state -}}
{{- if .address -}}
{{- $state := deepCopy (get $cfg "state" | default dict) -}}
{{- $_ := set $state "address" .address -}}
{{- if .username -}}
{{- $_ := set $state "username" .username -}}
{{- end -}}
{{- if .passwordSecret -}}
{{- $_ := set $state "password_file" (printf "/etc/popbridge/state/%s" .passwordKey) -}}
{{- end -}}
{{- if .tls.enabled -}}
{{- $_ := set $state "tls" true -}}
{{- if .tls.caSecret -}}
{{- $_ := set $state "ca_file" (printf "/etc/popbridge/state-ca/%s" .tls.caKey) -}}
{{- end -}}
{{- end -}}
{{- if .keyPrefix -}}
{{- $_ := set $state "key_prefix" .keyPrefix -}}
{{- end -}}
{{- $_ := set $cfg "state" $state -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
