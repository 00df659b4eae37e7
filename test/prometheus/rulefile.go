// Package prometheus turns the PrometheusRule of config/prometheus into what Prometheus and promtool
// read: a plain rule file. prometheus-operator does the same from the object's spec, which has the
// rule file's shape (groups). Its tests (rules_test.go) run promtool on the shipped rules; test/e2e
// and make demo (hack/demo) load the rules of test/e2e/testdata/prometheus into a real Prometheus.
package prometheus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// RuleFile is a Prometheus rule file: a PrometheusRule's spec.
type RuleFile struct {
	Groups []RuleGroup `json:"groups"`
}

// RuleGroup is one group of rules.
type RuleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []Rule `json:"rules"`
}

// Rule is an alerting or recording rule.
type Rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ExtractRuleFile returns the rule file of the one PrometheusRule among manifests (YAML documents
// separated by ---, such as rules.yaml or the output of kubectl kustomize), and that file as YAML.
// Fields of the spec that RuleFile does not know make it fail, so that no rule setting is dropped
// on the way.
func ExtractRuleFile(manifests []byte) (RuleFile, []byte, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var found []json.RawMessage
	for {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec json.RawMessage `json:"spec"`
		}
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return RuleFile{}, nil, fmt.Errorf("reading the manifests: %w", err)
		}
		if obj.Kind == "PrometheusRule" {
			found = append(found, obj.Spec)
		}
	}
	if len(found) != 1 {
		return RuleFile{}, nil, fmt.Errorf("want one PrometheusRule among the manifests, found %d", len(found))
	}
	var rf RuleFile
	if err := yaml.UnmarshalStrict(found[0], &rf); err != nil {
		return RuleFile{}, nil, fmt.Errorf("the PrometheusRule's spec is not a rule file: %w", err)
	}
	out, err := yaml.Marshal(rf)
	if err != nil {
		return RuleFile{}, nil, err
	}
	return rf, out, nil
}

// Alerts returns the alerting rules of every group.
func (rf RuleFile) Alerts() []Rule {
	var out []Rule
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// InstallHint is how to install Prometheus and promtool: Debian's package has both.
const InstallHint = "sudo apt-get install -y prometheus"

// TB is the part of testing.TB that LookPath uses (this package does not import testing: make demo
// uses it too).
type TB interface {
	Helper()
	Fatal(args ...any)
	Skip(args ...any)
}

// LookPath finds a Prometheus tool (prometheus, promtool) on the PATH. Without it the test skips,
// saying how to install it, or, under CI=true, fails: a skipped test would hide that nothing was
// tested (as testenv.MissingAssets does for the control plane).
func LookPath(t TB, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s is not installed (install it: %s)", tool, InstallHint)
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but " + msg)
	}
	t.Skip("skipping: " + msg)
	return ""
}

// APIGet decodes the data of a Prometheus HTTP API answer (GET base+path), or says why there is none.
func APIGet(hc *http.Client, base, path string, data any) error {
	resp, err := hc.Get(base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("GET %s: %s: %w", path, resp.Status, err)
	}
	if answer.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, answer.Error)
	}
	return json.Unmarshal(answer.Data, data)
}
