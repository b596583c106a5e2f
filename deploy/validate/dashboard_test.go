package main

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// exprUnits returns the Grafana units that fit what a PromQL query
// measures: a latency quantile is seconds, a rate over a rate a share, a
// rate is per second, an increase a count, a gauge of bytes bytes, a
// timestamp less time() seconds.
func exprUnits(expr string) []string {
	bytes := strings.Contains(expr, "_bytes")
	switch {
	case strings.Contains(expr, "histogram_quantile(") && strings.Contains(expr, "_seconds_bucket"):
		return []string{"s"}
	case strings.Count(expr, "rate(") == 2 && strings.Contains(expr, ") / "):
		return []string{"percentunit"}
	case strings.Contains(expr, "rate(") && bytes:
		return []string{"Bps", "binBps"}
	case strings.Contains(expr, "rate("):
		return []string{"ops", "cps", "reqps"}
	case bytes:
		return []string{"bytes", "decbytes"}
	case strings.Contains(expr, "_seconds") && strings.Contains(expr, "- time()"):
		return []string{"s", "dtdurations"} // a timestamp's distance from now
	}
	return []string{"short", "none"}
}

// Every panel of the dashboard has one unit, and each of its queries
// measures in that unit: no panel draws bytes and counts on one axis.
func TestDashboardOneUnitPerPanel(t *testing.T) {
	data, err := os.ReadFile("../monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title       string `json:"title"`
			FieldConfig struct {
				Defaults struct {
					Unit string `json:"unit"`
				} `json:"defaults"`
				Overrides []json.RawMessage `json:"overrides"`
			} `json:"fieldConfig"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if len(dash.Panels) < 10 {
		t.Fatalf("the dashboard has %d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		unit := p.FieldConfig.Defaults.Unit
		if unit == "" {
			t.Errorf("panel %q has no unit", p.Title)
		}
		// Overrides could give a series a second unit.
		if len(p.FieldConfig.Overrides) > 0 {
			t.Errorf("panel %q has field overrides", p.Title)
		}
		for _, target := range p.Targets {
			if fits := exprUnits(target.Expr); !slices.Contains(fits, unit) {
				t.Errorf("panel %q has unit %s, but its query %s measures in %v", p.Title, unit, target.Expr, fits)
			}
		}
	}
}
