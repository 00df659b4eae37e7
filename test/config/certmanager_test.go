// Package config_test checks that the manifests under config/ agree with each other and with the
// code: names one file gives and another expects.
package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	drv1alpha1 "github.com/lync-dr/poolpair-operator/api/v1alpha1"
	"github.com/lync-dr/poolpair-operator/internal/testenv"
)

// certificate is the part of a cert-manager Certificate the operator depends on.
type certificate struct {
	Kind string `json:"kind"`
	Spec struct {
		SecretName     string `json:"secretName"`
		SecretTemplate struct {
			Labels map[string]string `json:"labels"`
		} `json:"secretTemplate"`
		CommonName string   `json:"commonName"`
		Usages     []string `json:"usages"`
		IssuerRef  struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
		} `json:"issuerRef"`
		PrivateKey struct {
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
	} `json:"spec"`
}

// TestCertManagerIssuesTheSecretTheManagerMounts: config/certmanager's Certificate writes the
// Secret the manager's Deployment mounts as --agent-tls-dir, labelled so the manager may read it,
// for client authentication, from the Issuer next to it, with a new key at each renewal.
func TestCertManagerIssuesTheSecretTheManagerMounts(t *testing.T) {
	root := testenv.RepoRoot()
	var cert certificate
	load(t, filepath.Join(root, "config", "certmanager", "certificate.yaml"), &cert)
	var issuer struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	load(t, filepath.Join(root, "config", "certmanager", "issuer.yaml"), &issuer)
	var deployment appsv1.Deployment
	manifests, err := os.ReadFile(filepath.Join(root, "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(manifests), "\n---\n") {
		if strings.Contains(doc, "kind: Deployment") {
			if err := yaml.UnmarshalStrict([]byte(doc), &deployment); err != nil {
				t.Fatal(err)
			}
		}
	}

	mounted := ""
	for _, v := range deployment.Spec.Template.Spec.Volumes {
		if v.Name == "agent-tls" && v.Secret != nil {
			mounted = v.Secret.SecretName
		}
	}
	if mounted == "" || cert.Spec.SecretName != mounted {
		t.Errorf("the Certificate writes Secret %q; the Deployment mounts %q as its agent client certificate", cert.Spec.SecretName, mounted)
	}
	if cert.Spec.SecretTemplate.Labels[drv1alpha1.AgentTLSSecretLabel] != "true" {
		t.Errorf("the Secret is not labelled %s=true (secretTemplate): %v", drv1alpha1.AgentTLSSecretLabel, cert.Spec.SecretTemplate.Labels)
	}
	if !slices.Contains(cert.Spec.Usages, "client auth") || slices.Contains(cert.Spec.Usages, "server auth") {
		t.Errorf("usages %v: the agents accept a certificate for client authentication", cert.Spec.Usages)
	}
	if cert.Spec.CommonName != "poolpair-operator" {
		t.Errorf("commonName %q: the README's --allowed-clients example names poolpair-operator", cert.Spec.CommonName)
	}
	if cert.Spec.IssuerRef.Kind != issuer.Kind || cert.Spec.IssuerRef.Name != issuer.Metadata.Name {
		t.Errorf("the Certificate's issuer %s/%s is not the %s/%s beside it", cert.Spec.IssuerRef.Kind, cert.Spec.IssuerRef.Name, issuer.Kind, issuer.Metadata.Name)
	}
	if cert.Spec.PrivateKey.RotationPolicy != "Always" {
		t.Errorf("privateKey.rotationPolicy %q: a renewal should also replace the key", cert.Spec.PrivateKey.RotationPolicy)
	}
}

func load(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
