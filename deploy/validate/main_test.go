package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// popbridgeBinary builds popbridge from the main module once.
func popbridgeBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "popbridge")
	out, err := exec.Command("go", "build", "-C", "../..", "-o", bin, "./cmd/popbridge").CombinedOutput()
	if err != nil {
		t.Fatalf("building popbridge: %v\n%s", err, out)
	}
	return bin
}

const goodDeployment = `apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  popbridge.yaml: |
    listen:
      - address: "0.0.0.0:1110"
    upstream:
      address: "imap.example.com:993"
    limits:
      drain_timeout: 30s
    metrics:
      listen: "0.0.0.0:9110"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: popbridge
spec:
  selector:
    matchLabels: {app: popbridge}
  template:
    metadata:
      labels: {app: popbridge}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 40
      containers:
        - name: popbridge
          image: popbridge
          args: ["-config", "/etc/popbridge/config/popbridge.yaml"]
          ports:
            - {name: pop3, containerPort: 1110}
            - {name: metrics, containerPort: 9110}
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {memory: 256Mi}
          securityContext:
            runAsNonRoot: true
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities: {drop: ["ALL"]}
          livenessProbe:
            httpGet: {path: /healthz, port: metrics}
          readinessProbe:
            httpGet: {path: /readyz, port: metrics}
          lifecycle:
            preStop:
              sleep: {seconds: 5}
          volumeMounts:
            - {name: config, mountPath: /etc/popbridge/config}
      volumes:
        - name: config
          configMap: {name: cfg}
---
apiVersion: v1
kind: Service
metadata:
  name: popbridge
spec:
  selector: {app: popbridge}
  ports:
    - {name: pop3, port: 110, targetPort: pop3}
`

// Every rule fails on a manifest that breaks it, and the good one passes.
func TestValidateFindsEachMistake(t *testing.T) {
	bin := popbridgeBinary(t)
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"good", "", "", ""},
		{"unknown field", "automountServiceAccountToken: false", "automountServiceAccountToken: false\n      hostNetwrok: true", `unknown field "hostNetwrok"`},
		{"wrong type", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: forty", "terminationGracePeriodSeconds"},
		{"unknown kind", "kind: Service", "kind: Servise", `unexpected kind "Servise"`},
		{"grace period below drain", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds 30 < preStop sleep 5s + drain_timeout 30s"},
		{"readiness on healthz", "httpGet: {path: /readyz, port: metrics}", "httpGet: {path: /healthz, port: metrics}", "readiness probe must be an HTTP GET of /readyz"},
		{"writable root", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem is not true"},
		{"capability added", `capabilities: {drop: ["ALL"]}`, `capabilities: {drop: ["ALL"], add: ["NET_ADMIN"]}`, "capabilities must drop ALL"},
		{"bad popbridge config", `address: "imap.example.com:993"`, `adress: "imap.example.com:993"`, "adress"},
		{"undeclared listen port", `- address: "0.0.0.0:1110"`, `- address: "0.0.0.0:1111"`, "listen address 0.0.0.0:1111 is not a declared container port"},
		{"service port not named", "targetPort: pop3", "targetPort: 1110", `targetPort "1110" is not a named container port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			manifest := strings.Replace(goodDeployment, tc.from, tc.to, 1)
			if tc.from != "" && manifest == goodDeployment {
				t.Fatalf("%q not found in the manifest", tc.from)
			}
			objs, err := decodeAll(strings.NewReader(manifest))
			var errs []error
			if err != nil {
				errs = append(errs, err)
			} else {
				errs = check(objs, bin, nil)
			}
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			got := strings.Join(msgs, "\n")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("errors:\n%s\nwant: %q", got, tc.want)
			}
		})
	}
}

// The objects around the Deployment: each rule fails on an object that
// breaks it and passes on a good one.
func TestValidateSurroundingObjects(t *testing.T) {
	bin := popbridgeBinary(t)
	const hpa = `
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: popbridge
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: popbridge}
  minReplicas: 2
  maxReplicas: 4
`
	const netpol = `
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: popbridge
spec:
  podSelector:
    matchLabels: {app: popbridge}
  policyTypes: [Ingress]
  ingress:
    - ports: [{port: pop3}]
    - ports: [{port: metrics}]
      from: [{namespaceSelector: {matchLabels: {name: monitoring}}}]
`
	const monitor = `
---
apiVersion: v1
kind: Service
metadata:
  name: popbridge-metrics
  labels: {app: popbridge, component: metrics}
spec:
  selector: {app: popbridge}
  ports:
    - {name: metrics, port: 9110, targetPort: metrics}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: popbridge
spec:
  selector:
    matchLabels: {component: metrics}
  endpoints:
    - {port: metrics, interval: 30s}
`
	const tlsVolume = `
        - name: tls
          secret: {secretName: pop-tls}`
	const tlsMount = `
            - {name: tls, mountPath: /etc/popbridge/tls}`
	withTLS := strings.Replace(strings.Replace(goodDeployment,
		"configMap: {name: cfg}", "configMap: {name: cfg}"+tlsVolume, 1),
		"- {name: config, mountPath: /etc/popbridge/config}", "- {name: config, mountPath: /etc/popbridge/config}"+tlsMount, 1)
	for _, tc := range []struct {
		name, manifest string
		external       map[string]bool
		want           string
	}{
		{"autoscaled, no replicas", goodDeployment + hpa, nil, ""},
		{"autoscaled with replicas", strings.Replace(goodDeployment, "spec:\n  selector:", "spec:\n  replicas: 2\n  selector:", 1) + hpa, nil,
			"autoscaled Deployment popbridge sets replicas (2), which HorizontalPodAutoscaler popbridge owns"},
		{"network policy", goodDeployment + netpol, nil, ""},
		{"network policy on every pod", goodDeployment + strings.Replace(netpol, "matchLabels: {app: popbridge}", "{}", 1), nil, "podSelector must select the popbridge pods"},
		{"network policy, unknown port", goodDeployment + strings.Replace(netpol, "{port: pop3}", "{port: pop3s}", 1), nil, `port pop3s is not a named container port`},
		{"service monitor", goodDeployment + monitor, nil, ""},
		{"service monitor, wrong port", goodDeployment + strings.Replace(monitor, "{port: metrics, interval", "{port: http, interval", 1), nil, `Service popbridge-metrics has no port "http"`},
		{"service monitor selects nothing", goodDeployment + strings.Replace(monitor, "matchLabels: {component: metrics}", "matchLabels: {component: metricz}", 1), nil, "ServiceMonitor popbridge selects no rendered Service"},
		{"startup probe on readyz", strings.Replace(goodDeployment, "readinessProbe:", "startupProbe:\n            httpGet: {path: /readyz, port: metrics}\n          readinessProbe:", 1), nil,
			"startup probe must be an HTTP GET of /healthz"},
		{"TLS Secret missing", withTLS, nil, "Secret pop-tls is not rendered"},
		{"TLS Secret created outside", withTLS, map[string]bool{"pop-tls": true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := decodeAll(strings.NewReader(tc.manifest))
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, e := range check(objs, bin, tc.external) {
				msgs = append(msgs, e.Error())
			}
			got := strings.Join(msgs, "\n")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("errors:\n%s\nwant: %q", got, tc.want)
			}
		})
	}
}
