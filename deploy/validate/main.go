// Command validate checks rendered Kubernetes manifests (kustomize build,
// helm template) offline: every object is decoded strictly into the
// Kubernetes API types (an unknown or misspelt field is an error, as with
// kubectl's server-side field validation), and popbridge's own rules are
// checked: probes on /healthz and /readyz, a locked-down security context,
// a grace period that covers the drain timeout, Service ports that name
// container ports, a configuration that `popbridge check-config` accepts,
// no replica count where an autoscaler sets it, and NetworkPolicies and
// ServiceMonitors that reach the pods' named ports. It is a separate module so that the Kubernetes API types stay
// out of popbridge's own build.
//
//	kustomize build deploy/kubernetes/base | validate -popbridge ./popbridge -external-secret popbridge-tls
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	popbridge := flag.String("popbridge", "", "popbridge `binary` for check-config of the ConfigMaps (required)")
	external := map[string]bool{}
	flag.Func("external-secret", "a Secret `name` that is created outside the manifests (repeatable)", func(name string) error {
		external[name] = true
		return nil
	})
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: validate -popbridge BINARY [FILE...]   (default: standard input)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *popbridge == "" {
		flag.Usage()
		os.Exit(2)
	}
	var inputs []string
	if flag.NArg() == 0 {
		inputs = []string{"-"}
	} else {
		inputs = flag.Args()
	}
	var errs []error
	for _, in := range inputs {
		var r io.Reader = os.Stdin
		if in != "-" {
			f, err := os.Open(in)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			defer f.Close()
			r = f
		}
		objs, err := decodeAll(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", in, err))
			continue
		}
		for _, err := range check(objs, *popbridge, external) {
			errs = append(errs, fmt.Errorf("%s: %w", in, err))
		}
		fmt.Printf("%s: %d objects decoded strictly\n", in, len(objs))
	}
	if len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintln(os.Stderr, "validate:", err)
		}
		os.Exit(1)
	}
}

// object is one decoded manifest.
type object struct {
	kind, name string
	obj        any
}

// newObject returns an empty typed object for apiVersion and kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, nil
	}
	return nil, fmt.Errorf("unexpected kind %q of apiVersion %q", kind, apiVersion)
}

func decodeAll(r io.Reader) ([]object, error) {
	yr := k8syaml.NewYAMLReader(bufio.NewReader(r))
	var objs []object
	for {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, err
		}
		obj, err := newObject(tm.APIVersion, tm.Kind)
		if err != nil {
			return nil, err
		}
		// Strict: unknown fields and duplicate keys are errors.
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", tm.Kind, err)
		}
		name := obj.(metav1.Object).GetName()
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			return nil, fmt.Errorf("%s %q: %s", tm.Kind, name, strings.Join(msgs, "; "))
		}
		objs = append(objs, object{kind: tm.Kind, name: name, obj: obj})
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// check applies popbridge's rules across the objects. external names the
// Secrets that exist without being rendered (created by hand or by
// cert-manager).
func check(objs []object, popbridge string, external map[string]bool) []error {
	var errs []error
	configs := map[string]*corev1.ConfigMap{}
	secrets := maps.Clone(external)
	if secrets == nil {
		secrets = map[string]bool{}
	}
	var services []*corev1.Service
	var deployments []*appsv1.Deployment
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.ConfigMap:
			configs[v.Name] = v
		case *corev1.Secret:
			secrets[v.Name] = true
		case *appsv1.Deployment:
			deployments = append(deployments, v)
		case *corev1.Service:
			services = append(services, v)
		}
	}
	if len(deployments) == 0 {
		errs = append(errs, errors.New("no Deployment"))
	}
	for _, d := range deployments {
		errs = append(errs, checkDeployment(d, configs, secrets, popbridge)...)
	}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.Service:
			errs = append(errs, checkService(v, deployments)...)
		case *autoscalingv2.HorizontalPodAutoscaler:
			if !hasDeployment(deployments, v.Spec.ScaleTargetRef.Name) || v.Spec.ScaleTargetRef.Kind != "Deployment" {
				errs = append(errs, fmt.Errorf("HorizontalPodAutoscaler %s: target %s %s is not rendered", v.Name, v.Spec.ScaleTargetRef.Kind, v.Spec.ScaleTargetRef.Name))
			}
			if v.Spec.MinReplicas != nil && *v.Spec.MinReplicas < 2 {
				errs = append(errs, fmt.Errorf("HorizontalPodAutoscaler %s: minReplicas %d leaves no replica during a drain", v.Name, *v.Spec.MinReplicas))
			}
			errs = append(errs, checkScaledReplicas(v, deployments)...)
		case *policyv1.PodDisruptionBudget:
			if !selectsDeployment(v.Spec.Selector, deployments) {
				errs = append(errs, fmt.Errorf("PodDisruptionBudget %s selects no rendered Deployment", v.Name))
			}
		case *networkingv1.NetworkPolicy:
			errs = append(errs, checkNetworkPolicy(v, deployments)...)
		case *monitoringv1.ServiceMonitor:
			errs = append(errs, checkServiceMonitor(v, services)...)
		}
	}
	return errs
}

func hasDeployment(ds []*appsv1.Deployment, name string) bool {
	for _, d := range ds {
		if d.Name == name {
			return true
		}
	}
	return false
}

func selectsDeployment(sel *metav1.LabelSelector, ds []*appsv1.Deployment) bool {
	matches, ok := selected(sel, ds, podLabels)
	return ok && len(matches) > 0
}

func checkService(svc *corev1.Service, ds []*appsv1.Deployment) []error {
	var errs []error
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var target *appsv1.Deployment
	for _, d := range ds {
		if len(svc.Spec.Selector) > 0 && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			target = d
		}
	}
	if target == nil {
		return []error{fmt.Errorf("service %s selects no rendered Deployment", svc.Name)}
	}
	ports := map[string]bool{}
	for _, c := range target.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
	}
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.StrVal == "" || !ports[p.TargetPort.StrVal] {
			errs = append(errs, fmt.Errorf("service %s port %s: targetPort %q is not a named container port", svc.Name, p.Name, p.TargetPort.String()))
		}
	}
	return errs
}

// checkDeployment checks the popbridge container of d, which may be a
// regular container or a native sidecar (an init container that always
// restarts).
func checkDeployment(d *appsv1.Deployment, configs map[string]*corev1.ConfigMap, secrets map[string]bool, popbridge string) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Deployment %s: "+format, append([]any{d.Name}, args...)...))
	}
	pod := d.Spec.Template.Spec
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		fail("selector does not match the pod template's labels")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		fail("automountServiceAccountToken must be false: popbridge needs no API access")
	}
	var c *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == "popbridge" {
			c = &pod.Containers[i]
		}
	}
	for i := range pod.InitContainers {
		ic := &pod.InitContainers[i]
		if ic.Name == "popbridge" {
			if ic.RestartPolicy == nil || *ic.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				fail("init container popbridge must be a native sidecar (restartPolicy: Always)")
			}
			c = ic
		}
	}
	if c == nil {
		fail("no container named popbridge")
		return errs
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || ports[p.HTTPGet.Port.StrVal] == 0 {
			fail("%s probe must be an HTTP GET of %s on a named container port", name, path)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	// A startup probe holds back the containers after a sidecar: on /readyz
	// an IMAP outage would keep the application from starting at all.
	if c.StartupProbe != nil {
		probe("startup", c.StartupProbe, "/healthz")
	}

	sc := c.SecurityContext
	psc := pod.SecurityContext
	if sc == nil {
		fail("container popbridge has no securityContext")
		return errs
	}
	nonRoot := sc.RunAsNonRoot != nil && *sc.RunAsNonRoot || psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	if !nonRoot {
		fail("runAsNonRoot is not set")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		fail("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		fail("allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
		fail("capabilities must drop ALL and add none")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		fail("container popbridge needs cpu and memory requests and a memory limit")
	}

	// The config file: from a ConfigMap volume, checked by popbridge itself.
	configPath := ""
	for i, a := range c.Args {
		if a == "-config" && i+1 < len(c.Args) {
			configPath = c.Args[i+1]
		}
	}
	if configPath == "" {
		fail("popbridge is not started with -config")
		return errs
	}
	var cm *corev1.ConfigMap
	mounts := map[string]string{} // mount path -> volume
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	for _, v := range pod.Volumes {
		if mounts[filepath.Dir(configPath)] == v.Name && v.ConfigMap != nil {
			cm = configs[v.ConfigMap.Name]
			if cm == nil {
				fail("ConfigMap %s is not rendered", v.ConfigMap.Name)
			}
		}
		if v.Secret != nil && !secrets[v.Secret.SecretName] && mountedAs(mounts, v.Name) {
			fail("Secret %s is not rendered", v.Secret.SecretName)
		}
	}
	if cm == nil {
		fail("no ConfigMap volume mounted at %s", filepath.Dir(configPath))
		return errs
	}
	data, ok := cm.Data[filepath.Base(configPath)]
	if !ok {
		fail("ConfigMap %s has no key %s", cm.Name, filepath.Base(configPath))
		return errs
	}
	cfg, err := checkConfig(popbridge, data, secretMounts(mounts, pod.Volumes))
	if err != nil {
		fail("ConfigMap %s: %v", cm.Name, err)
		return errs
	}
	for _, addr := range cfg.listen {
		// A sidecar listens on the pod's loopback, declared nowhere.
		if !strings.HasPrefix(addr, "127.") && !strings.HasPrefix(addr, "[::1]") && !portDeclared(addr, ports) {
			fail("listen address %s is not a declared container port", addr)
		}
	}
	if cfg.metrics == "" || !portDeclared(cfg.metrics, ports) {
		fail("metrics.listen %q is not the declared metrics port", cfg.metrics)
	}

	// SIGTERM comes after preStop; sessions then get drain_timeout.
	var preStop int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = c.Lifecycle.PreStop.Sleep.Seconds
	}
	grace := int64(30)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if need := preStop + int64(cfg.drain.Seconds()); grace < need {
		fail("terminationGracePeriodSeconds %d < preStop sleep %ds + drain_timeout %v", grace, preStop, cfg.drain)
	}
	return errs
}

func mountedAs(mounts map[string]string, volume string) bool {
	for _, v := range mounts {
		if v == volume {
			return true
		}
	}
	return false
}

// secretMounts returns the paths where the container mounts Secrets, in
// order.
func secretMounts(mounts map[string]string, volumes []corev1.Volume) []string {
	var paths []string
	for path, name := range mounts {
		for _, v := range volumes {
			if v.Name == name && v.Secret != nil {
				paths = append(paths, path)
			}
		}
	}
	slices.Sort(paths)
	return paths
}

func portDeclared(addr string, ports map[string]int32) bool {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return false
	}
	for _, p := range ports {
		if fmt.Sprint(p) == addr[i+1:] {
			return true
		}
	}
	return false
}
