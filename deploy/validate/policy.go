// The rules for the objects around the Deployment that reach its pods by
// label and port name: the autoscaler, NetworkPolicies and ServiceMonitors.
package main

import (
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// checkScaledReplicas: a Deployment that an autoscaler scales must not set
// replicas, or every `kubectl apply` resets the count the autoscaler chose.
func checkScaledReplicas(hpa *autoscalingv2.HorizontalPodAutoscaler, ds []*appsv1.Deployment) []error {
	for _, d := range ds {
		if d.Name == hpa.Spec.ScaleTargetRef.Name && d.Spec.Replicas != nil {
			return []error{fmt.Errorf("autoscaled Deployment %s sets replicas (%d), which HorizontalPodAutoscaler %s owns", d.Name, *d.Spec.Replicas, hpa.Name)}
		}
	}
	return nil
}

// checkNetworkPolicy: the policy selects the popbridge pods, and every port
// it opens is one of their named ports.
func checkNetworkPolicy(np *networkingv1.NetworkPolicy, ds []*appsv1.Deployment) []error {
	matches, ok := selected(&np.Spec.PodSelector, ds, podLabels)
	if !ok {
		return []error{fmt.Errorf("NetworkPolicy %s: podSelector must select the popbridge pods, not every pod", np.Name)}
	}
	if len(matches) == 0 {
		return []error{fmt.Errorf("NetworkPolicy %s selects no rendered Deployment", np.Name)}
	}
	target := matches[len(matches)-1]
	ports := containerPorts(target)
	var errs []error
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.StrVal == "" || !ports[p.Port.StrVal] {
				errs = append(errs, fmt.Errorf("NetworkPolicy %s: port %v is not a named container port of Deployment %s", np.Name, p.Port, target.Name))
			}
		}
	}
	return errs
}

// checkServiceMonitor: the monitor selects a rendered Service (in its own
// namespace) that has the port each endpoint names, and that port goes to
// the container's metrics port.
func checkServiceMonitor(sm *monitoringv1.ServiceMonitor, svcs []*corev1.Service) []error {
	matches, ok := selected(&sm.Spec.Selector, svcs, func(s *corev1.Service) map[string]string { return s.Labels })
	switch {
	case !ok:
		return []error{fmt.Errorf("ServiceMonitor %s: selector must select the metrics Service", sm.Name)}
	case len(matches) == 0:
		return []error{fmt.Errorf("ServiceMonitor %s selects no rendered Service", sm.Name)}
	case len(matches) > 1:
		return []error{fmt.Errorf("ServiceMonitor %s selects both Service %s and %s", sm.Name, matches[0].Name, matches[1].Name)}
	}
	target := matches[0]
	if len(sm.Spec.Endpoints) == 0 {
		return []error{fmt.Errorf("ServiceMonitor %s has no endpoints", sm.Name)}
	}
	var errs []error
	for _, ep := range sm.Spec.Endpoints {
		found := false
		for _, p := range target.Spec.Ports {
			if p.Name == ep.Port {
				found = p.TargetPort.StrVal == "metrics"
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("ServiceMonitor %s: Service %s has no port %q with targetPort metrics", sm.Name, target.Name, ep.Port))
		}
	}
	return errs
}

// selected returns the objects of objs whose labels sel matches; ok is
// false for a selector that does not parse or is empty, which would select
// every pod, never what these objects mean.
func selected[T any](sel *metav1.LabelSelector, objs []T, labelsOf func(T) map[string]string) (matches []T, ok bool) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return nil, false
	}
	for _, o := range objs {
		if s.Matches(labels.Set(labelsOf(o))) {
			matches = append(matches, o)
		}
	}
	return matches, true
}

// podLabels are the labels of the pods a Deployment makes.
func podLabels(d *appsv1.Deployment) map[string]string { return d.Spec.Template.Labels }

func containerPorts(d *appsv1.Deployment) map[string]bool {
	ports := map[string]bool{}
	for _, cs := range [][]corev1.Container{d.Spec.Template.Spec.Containers, d.Spec.Template.Spec.InitContainers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
		}
	}
	return ports
}
