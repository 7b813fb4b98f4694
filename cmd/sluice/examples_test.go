package main

// Tests of the files under deploy/: every example config passes `sluice
// check`, the Kubernetes manifests are well-formed and agree with each other
// and with the config they carry, and the Grafana dashboard queries only
// metrics (and labels) that Sluice exposes. Nothing here starts a server or
// touches the network.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider"
)

const deployDir = "../../deploy"

// exampleEnv is the environment an example config needs beyond what its
// own ${VAR:-default}s give, by file name. A ${VAR} without a default that
// is not listed here gets a placeholder string, which suits keys; list
// variables that must be URLs or numbers.
var exampleEnv = map[string]map[string]string{}

// envRef matches ${VAR} and ${VAR:-default} (not $${, a literal).
var envRef = regexp.MustCompile(`(^|[^$])\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// setExampleEnv makes the environment of a config file hermetic: variables
// with a default are emptied (so the default applies whatever the caller's
// environment holds), variables without one get env[name] or a placeholder,
// and REDIS_URL, which config.Load reads by itself, is env's or empty.
func setExampleEnv(t *testing.T, text string, env map[string]string) {
	t.Helper()
	t.Setenv("REDIS_URL", env["REDIS_URL"])
	for _, m := range envRef.FindAllStringSubmatch(text, -1) {
		name, hasDefault := m[2], m[3] != ""
		switch v, ok := env[name]; {
		case ok:
			t.Setenv(name, v)
		case hasDefault:
			t.Setenv(name, "")
		default:
			t.Setenv(name, "placeholder-"+strings.ToLower(name))
		}
	}
}

// checkConfig runs `sluice check` on a file and returns its stdout.
func checkConfig(t *testing.T, file string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--config", file}, &out, &errOut); code != 0 {
		t.Fatalf("sluice check --config %s: exit %d\n%s%s", file, code, out.String(), errOut.String())
	}
	return out.String()
}

func TestExamplesConfigsCheck(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(deployDir, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"quickstart.yaml", "providers.yaml"} {
		if !slices.Contains(files, filepath.Join(deployDir, "examples", want)) {
			t.Errorf("deploy/examples/%s is missing (found %v)", want, files)
		}
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			setExampleEnv(t, string(data), exampleEnv[filepath.Base(file)])
			checkConfig(t, file)
		})
	}
}

// TestExamplesProvidersCoverEveryType keeps providers.yaml a complete
// catalogue: a channel of each type Sluice serves (xinghuo has two, one per
// Spark API).
func TestExamplesProvidersCoverEveryType(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "examples", "providers.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	setExampleEnv(t, string(data), exampleEnv["providers.yaml"])
	cfg, _, err := config.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ch := range cfg.Channels {
		types = append(types, strings.ToLower(ch.Type))
	}
	slices.Sort(types)
	types = slices.Compact(types)
	if want := provider.Types(); !slices.Equal(types, want) {
		t.Fatalf("providers.yaml has channels of types\n  %v\nwant one of each type Sluice serves\n  %v", types, want)
	}
}

// k8sObject is the part of a Kubernetes manifest the tests read.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`       // ConfigMap
	StringData map[string]string `yaml:"stringData"` // Secret
	Resources  []string          `yaml:"resources"`  // Kustomization
	Spec       yaml.Node         `yaml:"spec"`
	file       string
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type k8sSecurityContext struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	RunAsUser                *int  `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
	SeccompProfile struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type k8sDeploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec struct {
			TerminationGracePeriodSeconds int                `yaml:"terminationGracePeriodSeconds"`
			SecurityContext               k8sSecurityContext `yaml:"securityContext"`
			TopologySpreadConstraints     []struct {
				TopologyKey string `yaml:"topologyKey"`
			} `yaml:"topologySpreadConstraints"`
			Containers []struct {
				Name  string   `yaml:"name"`
				Image string   `yaml:"image"`
				Args  []string `yaml:"args"`
				Ports []struct {
					Name          string `yaml:"name"`
					ContainerPort int    `yaml:"containerPort"`
				} `yaml:"ports"`
				EnvFrom []struct {
					SecretRef *struct {
						Name string `yaml:"name"`
					} `yaml:"secretRef"`
				} `yaml:"envFrom"`
				Env []struct {
					Name  string `yaml:"name"`
					Value string `yaml:"value"`
				} `yaml:"env"`
				VolumeMounts []struct {
					Name      string `yaml:"name"`
					MountPath string `yaml:"mountPath"`
				} `yaml:"volumeMounts"`
				StartupProbe    *k8sProbe          `yaml:"startupProbe"`
				LivenessProbe   *k8sProbe          `yaml:"livenessProbe"`
				ReadinessProbe  *k8sProbe          `yaml:"readinessProbe"`
				SecurityContext k8sSecurityContext `yaml:"securityContext"`
				Resources       struct {
					Requests map[string]string `yaml:"requests"`
					Limits   map[string]string `yaml:"limits"`
				} `yaml:"resources"`
			} `yaml:"containers"`
			Volumes []struct {
				Name      string `yaml:"name"`
				ConfigMap *struct {
					Name  string `yaml:"name"`
					Items []struct {
						Key  string `yaml:"key"`
						Path string `yaml:"path"`
					} `yaml:"items"`
				} `yaml:"configMap"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

// readManifests parses every document of every deploy/kubernetes/*.yaml.
func readManifests(t *testing.T) []*k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	var objs []*k8sObject
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				t.Fatalf("%s: %v", file, err)
			}
			if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
				continue // an empty document (a lone --- or comments)
			}
			obj := &k8sObject{file: filepath.Base(file)}
			if err := doc.Decode(obj); err != nil {
				f.Close()
				t.Fatalf("%s: %v", file, err)
			}
			objs = append(objs, obj)
		}
		f.Close()
	}
	return objs
}

// decodeSpec decodes an object's spec into out.
func decodeSpec(t *testing.T, o *k8sObject, out any) {
	t.Helper()
	if err := o.Spec.Decode(out); err != nil {
		t.Fatalf("%s: %s spec: %v", o.file, o.Kind, err)
	}
}

func TestExamplesKubernetes(t *testing.T) {
	objs := readManifests(t)
	want := map[string]string{
		"ConfigMap":               "v1",
		"Secret":                  "v1",
		"Deployment":              "apps/v1",
		"Service":                 "v1",
		"PodDisruptionBudget":     "policy/v1",
		"HorizontalPodAutoscaler": "autoscaling/v2",
		"Kustomization":           "kustomize.config.k8s.io/v1beta1",
	}
	byKind := map[string]*k8sObject{}
	files := map[string]bool{}
	for _, o := range objs {
		files[o.file] = true
		if o.APIVersion == "" || o.Kind == "" {
			t.Errorf("%s: a document without apiVersion or kind", o.file)
			continue
		}
		if v, ok := want[o.Kind]; ok && v != o.APIVersion {
			t.Errorf("%s: %s has apiVersion %q, want %q", o.file, o.Kind, o.APIVersion, v)
		}
		if byKind[o.Kind] != nil {
			t.Errorf("%s: a second %s (also in %s)", o.file, o.Kind, byKind[o.Kind].file)
		}
		byKind[o.Kind] = o
		if o.Kind == "Kustomization" {
			continue
		}
		if o.Metadata.Name == "" {
			t.Errorf("%s: %s without metadata.name", o.file, o.Kind)
		}
		if o.Metadata.Namespace != "" {
			t.Errorf("%s: %s sets a namespace; the manifests must be namespace-agnostic", o.file, o.Kind)
		}
		if o.Metadata.Labels["app.kubernetes.io/name"] != "sluice" {
			t.Errorf("%s: %s lacks the label app.kubernetes.io/name: sluice", o.file, o.Kind)
		}
	}
	for kind := range want {
		if byKind[kind] == nil {
			t.Errorf("no %s in deploy/kubernetes", kind)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// kustomization.yaml lists every other file, and only existing ones.
	kust := byKind["Kustomization"]
	listed := slices.Sorted(slices.Values(kust.Resources))
	var others []string
	for f := range files {
		if f != kust.file {
			others = append(others, f)
		}
	}
	slices.Sort(others)
	if !slices.Equal(listed, others) {
		t.Errorf("kustomization resources %v, want the other manifests %v", listed, others)
	}

	cm, secret := byKind["ConfigMap"], byKind["Secret"]
	var dep k8sDeploymentSpec
	decodeSpec(t, byKind["Deployment"], &dep)
	pod := dep.Template.Spec
	if dep.Replicas != 3 || len(pod.Containers) != 1 {
		t.Fatalf("the Deployment wants 3 replicas of one container, has %d of %d", dep.Replicas, len(pod.Containers))
	}
	c := pod.Containers[0]
	if !subset(dep.Selector.MatchLabels, dep.Template.Metadata.Labels) || len(dep.Selector.MatchLabels) == 0 {
		t.Errorf("the Deployment's selector %v does not select its pods %v", dep.Selector.MatchLabels, dep.Template.Metadata.Labels)
	}
	if c.Image != "ghcr.io/sluice-gateway/sluice:latest" {
		t.Errorf("image %q", c.Image)
	}

	// The config: args name the file that the ConfigMap volume provides.
	if len(c.Args) != 3 || c.Args[0] != "serve" || c.Args[1] != "--config" {
		t.Fatalf("args %v, want serve --config FILE", c.Args)
	}
	configPath := ""
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil || v.ConfigMap.Name != cm.Metadata.Name {
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if it.Key == "config.yaml" {
					configPath = path.Join(vm.MountPath, it.Path)
				}
			}
			if len(v.ConfigMap.Items) == 0 {
				configPath = path.Join(vm.MountPath, "config.yaml")
			}
		}
	}
	if configPath != c.Args[2] {
		t.Errorf("args read %s, but the ConfigMap %s is mounted as %q", c.Args[2], cm.Metadata.Name, configPath)
	}
	secretRef := false
	for _, ef := range c.EnvFrom {
		secretRef = secretRef || (ef.SecretRef != nil && ef.SecretRef.Name == secret.Metadata.Name)
	}
	if !secretRef {
		t.Errorf("the container does not take its environment from the Secret %s", secret.Metadata.Name)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"} {
		if _, ok := env[name]; !ok {
			t.Errorf("the container lacks %s", name)
		}
	}

	// The ConfigMap's config passes `sluice check` with exactly the
	// environment the pod gets: the Secret's keys and the container's env.
	text, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("the ConfigMap lacks config.yaml")
	}
	podEnv := maps.Clone(secret.StringData)
	maps.Copy(podEnv, env)
	for _, m := range envRef.FindAllStringSubmatch(text, -1) {
		if _, ok := podEnv[m[2]]; !ok && m[3] == "" {
			t.Errorf("the config names ${%s}, which neither the Secret nor the container's env sets", m[2])
		}
	}
	if podEnv["REDIS_URL"] == "" {
		t.Errorf("the Secret must set REDIS_URL: the replicas share their limits through it")
	}
	for k, v := range secret.StringData {
		if !strings.Contains(strings.ToUpper(v), "REPLACE") {
			t.Errorf("Secret value %s must be an obvious placeholder (containing REPLACE), got %q", k, v)
		}
	}
	setExampleEnv(t, text, podEnv)
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := checkConfig(t, file); !strings.Contains(out, "ok (sluice format)") || !strings.Contains(out, "2 client keys") {
		t.Errorf("the ConfigMap's config: %s", out)
	}
	cfg, _, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Redis == nil || cfg.Redis.URL != podEnv["REDIS_URL"] {
		t.Errorf("the config must share state through REDIS_URL, has redis %+v", cfg.Redis)
	}

	// Shutdown: the pod is given longer than Sluice takes to drain, and the
	// readiness probe sees /readyz fail within shutdown_delay.
	shutdown := cfg.Server.ShutdownDelay.D() + cfg.Server.DrainTimeout.D()
	if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v must exceed shutdown_delay + drain_timeout = %v", grace, shutdown)
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	_, listenPort, _ := strings.Cut(cfg.Server.Listen, ":")
	for name, p := range map[string]*k8sProbe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", name)
			continue
		}
		port := p.HTTPGet.Port
		if s, ok := port.(string); ok {
			port = ports[s]
		}
		if port != mustAtoi(t, listenPort) {
			t.Errorf("%s probes port %v, Sluice listens on %s", name, p.HTTPGet.Port, cfg.Server.Listen)
		}
	}
	if p := c.LivenessProbe; p != nil && p.HTTPGet != nil && p.HTTPGet.Path != "/healthz" {
		t.Errorf("livenessProbe path %q, want /healthz", p.HTTPGet.Path)
	}
	if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil {
		if p.HTTPGet.Path != "/readyz" || p.PeriodSeconds != 2 {
			t.Errorf("readinessProbe %s every %ds, want /readyz every 2s", p.HTTPGet.Path, p.PeriodSeconds)
		}
		if notice := time.Duration(p.PeriodSeconds*max(p.FailureThreshold, 1)) * time.Second; notice > cfg.Server.ShutdownDelay.D() {
			t.Errorf("the readiness probe notices a drain after %v, longer than shutdown_delay %v", notice, cfg.Server.ShutdownDelay.D())
		}
	}

	// Metrics are scraped where Sluice serves them.
	ann := dep.Template.Metadata.Annotations
	metricsPort := listenPort
	if l := cfg.Telemetry.Metrics.Listen; l != "" {
		_, metricsPort, _ = strings.Cut(l, ":")
		if ports["metrics"] != mustAtoi(t, metricsPort) {
			t.Errorf("the container's port \"metrics\" is %d, Sluice serves metrics on %s", ports["metrics"], l)
		}
	}
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != metricsPort || ann["prometheus.io/path"] != cfg.Telemetry.Metrics.Path {
		t.Errorf("scrape annotations %v, want port %s path %s", ann, metricsPort, cfg.Telemetry.Metrics.Path)
	}

	// Hardening.
	sc, psc := c.SecurityContext, pod.SecurityContext
	if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
		t.Error("runAsNonRoot is not set")
	}
	if (sc.RunAsUser == nil || *sc.RunAsUser != 65532) && (psc.RunAsUser == nil || *psc.RunAsUser != 65532) {
		t.Error("runAsUser is not 65532")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container needs readOnlyRootFilesystem: true and allowPrivilegeEscalation: false")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("the container must drop ALL capabilities")
	}
	if sc.SeccompProfile.Type != "RuntimeDefault" && psc.SeccompProfile.Type != "RuntimeDefault" {
		t.Error("seccompProfile is not RuntimeDefault")
	}
	if len(c.Resources.Requests) == 0 || len(c.Resources.Limits) == 0 || c.Resources.Requests["cpu"] == "" {
		t.Error("the container needs resource requests (cpu, for the HPA) and limits")
	}
	spread := false
	for _, tsc := range pod.TopologySpreadConstraints {
		spread = spread || tsc.TopologyKey == "kubernetes.io/hostname"
	}
	if !spread {
		t.Error("no topology spread across nodes (kubernetes.io/hostname)")
	}

	// Service, PDB and HPA point at the Deployment's pods.
	var svc struct {
		Type     string            `yaml:"type"`
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Port       int `yaml:"port"`
			TargetPort any `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	decodeSpec(t, byKind["Service"], &svc)
	if svc.Type != "ClusterIP" || len(svc.Selector) == 0 || !subset(svc.Selector, dep.Template.Metadata.Labels) {
		t.Errorf("the Service (%s, selector %v) does not select the pods", svc.Type, svc.Selector)
	}
	if len(svc.Ports) != 1 || svc.Ports[0].Port != 80 {
		t.Fatalf("the Service wants port 80, has %+v", svc.Ports)
	}
	target := svc.Ports[0].TargetPort
	if s, ok := target.(string); ok {
		target = ports[s]
	}
	if target != mustAtoi(t, listenPort) {
		t.Errorf("the Service sends to port %v, Sluice listens on %s", svc.Ports[0].TargetPort, cfg.Server.Listen)
	}
	var pdb struct {
		MinAvailable any `yaml:"minAvailable"`
		Selector     struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	}
	decodeSpec(t, byKind["PodDisruptionBudget"], &pdb)
	if pdb.MinAvailable != 2 || len(pdb.Selector.MatchLabels) == 0 || !subset(pdb.Selector.MatchLabels, dep.Template.Metadata.Labels) {
		t.Errorf("the PDB (minAvailable %v, selector %v) must keep 2 of the pods", pdb.MinAvailable, pdb.Selector.MatchLabels)
	}
	var hpa struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int `yaml:"minReplicas"`
		MaxReplicas int `yaml:"maxReplicas"`
		Metrics     []struct {
			Resource struct {
				Name   string `yaml:"name"`
				Target struct {
					AverageUtilization int `yaml:"averageUtilization"`
				} `yaml:"target"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
	}
	decodeSpec(t, byKind["HorizontalPodAutoscaler"], &hpa)
	ref := hpa.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != byKind["Deployment"].Metadata.Name {
		t.Errorf("the HPA scales %s %s, not the Deployment", ref.Kind, ref.Name)
	}
	if hpa.MinReplicas != 3 || hpa.MaxReplicas != 10 || len(hpa.Metrics) != 1 ||
		hpa.Metrics[0].Resource.Name != "cpu" || hpa.Metrics[0].Resource.Target.AverageUtilization != 70 {
		t.Errorf("the HPA wants 3 to 10 replicas on 70%% CPU, has %+v", hpa)
	}
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func isTrue(b *bool) bool { return b != nil && *b }

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a port number: %q", s)
	}
	return n
}

// metricLabels lists the metric families Sluice exposes at /metrics (OTel
// names as the Prometheus exporter writes them) and the labels of each.
var metricLabels = map[string][]string{
	"sluice_requests_total":              {"sluice_endpoint", "gen_ai_request_model", "sluice_channel", "http_response_status_code", "sluice_stream"},
	"sluice_request_duration_seconds":    {"sluice_endpoint", "gen_ai_request_model", "sluice_channel", "http_response_status_code", "sluice_stream"},
	"sluice_time_to_first_token_seconds": {"gen_ai_request_model", "sluice_channel", "sluice_stream"},
	"gen_ai_client_token_usage":          {"gen_ai_token_type", "gen_ai_system", "gen_ai_request_model", "gen_ai_operation_name"},
	"sluice_tokens_total":                {"gen_ai_token_type", "gen_ai_request_model", "sluice_channel", "sluice_credential_id"},
	"sluice_quota_refusals_total":        {"sluice_quota_scope", "sluice_quota_result", "gen_ai_request_model"},
	"sluice_upstream_attempts_total":     {"sluice_channel", "sluice_credential_id", "sluice_outcome"},
	"sluice_retries_total":               {"sluice_channel", "sluice_credential_id"},
	"sluice_quota_backend_errors_total":  {"sluice_quota_policy"},
	"sluice_requests_in_flight":          {},
	"sluice_streams_in_flight":           {},
	"sluice_breaker_state":               {"sluice_credential_id", "sluice_channel"},
	"sluice_quota_fallback":              {"sluice_quota_policy"},
	"sluice_quota_outages_total":         {"sluice_quota_policy"},
}

// histograms are the families that come as _bucket, _sum and _count.
var histograms = []string{"sluice_request_duration_seconds", "sluice_time_to_first_token_seconds", "gen_ai_client_token_usage"}

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"instance", "job"}

// family returns the family of a series name, and whether it has one. A
// histogram's series are its _bucket, _sum and _count: its bare name
// selects nothing.
func family(name string) (string, bool) {
	if _, ok := metricLabels[name]; ok && !slices.Contains(histograms, name) {
		return name, true
	}
	for _, h := range histograms {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if name == h+suffix {
				return h, true
			}
		}
	}
	return "", false
}

var (
	promString    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promSelector  = regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}`)
	promMatcher   = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promLabelVals = regexp.MustCompile(`\blabel_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)?\s*,?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)`)
	promSluiceID  = regexp.MustCompile(`\b(?:sluice|gen_ai)_[A-Za-z0-9_:]*`)
	legendLabel   = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
)

// promQuery is what a PromQL expression uses.
type promQuery struct {
	metrics []string            // sluice_* and gen_ai_* series names
	labels  []string            // labels in grouping clauses and label_values
	matched map[string][]string // selector's metric ("" if none) -> labels it matches on
}

// parsePromQL finds the Sluice metrics and the labels a query uses. It is
// not a parser: it removes strings, then reads label matchers, grouping
// clauses and label_values() arguments, and what is left that looks like
// a Sluice name is a metric.
func parsePromQL(expr string) promQuery {
	q := promQuery{matched: map[string][]string{}}
	s := promString.ReplaceAllString(expr, `""`)
	s = promSelector.ReplaceAllStringFunc(s, func(m string) string {
		sm := promSelector.FindStringSubmatch(m)
		for _, lm := range promMatcher.FindAllStringSubmatch(sm[2], -1) {
			q.matched[sm[1]] = append(q.matched[sm[1]], lm[1])
		}
		return sm[1]
	})
	s = promGrouping.ReplaceAllStringFunc(s, func(m string) string {
		for _, l := range strings.Split(promGrouping.FindStringSubmatch(m)[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				q.labels = append(q.labels, l)
			}
		}
		return " "
	})
	s = promLabelVals.ReplaceAllStringFunc(s, func(m string) string {
		sm := promLabelVals.FindStringSubmatch(m)
		q.labels = append(q.labels, sm[2])
		return sm[1]
	})
	q.metrics = promSluiceID.FindAllString(s, -1)
	return q
}

func TestExamplesParsePromQL(t *testing.T) {
	q := parsePromQL(`sum by (le, sluice_channel) (rate(sluice_request_duration_seconds_bucket{sluice_channel=~"$channel", gen_ai_request_model!="sluice_x{"}[5m])) / on (instance) group_left sum(sluice_requests_in_flight) or label_values(sluice_breaker_state{sluice_channel="a"}, sluice_credential_id)`)
	if want := []string{"sluice_request_duration_seconds_bucket", "sluice_requests_in_flight", "sluice_breaker_state"}; !slices.Equal(q.metrics, want) {
		t.Errorf("metrics %v, want %v", q.metrics, want)
	}
	if want := []string{"le", "sluice_channel", "instance", "sluice_credential_id"}; !slices.Equal(q.labels, want) {
		t.Errorf("labels %v, want %v", q.labels, want)
	}
	if got := q.matched["sluice_request_duration_seconds_bucket"]; !slices.Equal(got, []string{"sluice_channel", "gen_ai_request_model"}) {
		t.Errorf("matchers %v", q.matched)
	}
}

func TestExamplesGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "grafana", "sluice-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("sluice-dashboard.json is not valid JSON: %v", err)
	}
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("schemaVersion %v", dash["schemaVersion"])
	}
	if uid, _ := dash["uid"].(string); uid == "" {
		t.Error("the dashboard needs a uid")
	}

	// The data source is a ${DS_PROMETHEUS} input and variable; channel and
	// model are variables.
	vars := map[string]map[string]any{}
	if tpl, ok := dash["templating"].(map[string]any); ok {
		list, _ := tpl["list"].([]any)
		for _, v := range list {
			if m, ok := v.(map[string]any); ok {
				name, _ := m["name"].(string)
				vars[name] = m
			}
		}
	}
	if ds := vars["DS_PROMETHEUS"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Errorf("no Prometheus data source variable DS_PROMETHEUS: %v", ds)
	}
	for _, name := range []string{"channel", "model"} {
		if v := vars[name]; v == nil || v["type"] != "query" {
			t.Errorf("no query variable %q", name)
		}
	}
	inputOK := false
	inputs, _ := dash["__inputs"].([]any)
	for _, in := range inputs {
		if m, ok := in.(map[string]any); ok && m["name"] == "DS_PROMETHEUS" && m["pluginId"] == "prometheus" {
			inputOK = true
		}
	}
	if !inputOK {
		t.Error("no DS_PROMETHEUS entry in __inputs")
	}

	// Every query uses only metrics and labels that Sluice exposes, and
	// every metric family is on the dashboard.
	used := map[string]bool{}
	checkQuery := func(where, expr, legend string) {
		q := parsePromQL(expr)
		allowed := slices.Clone(targetLabels)
		for _, name := range q.metrics {
			fam, ok := family(name)
			if !ok {
				t.Errorf("%s: %s is not a metric Sluice exposes: %s", where, name, expr)
				continue
			}
			used[fam] = true
			allowed = append(allowed, metricLabels[fam]...)
			if strings.HasSuffix(name, "_bucket") {
				allowed = append(allowed, "le")
			}
		}
		for sel, labels := range q.matched {
			fam, ok := family(sel)
			if !ok {
				continue // reported above, or a selector without a metric name
			}
			for _, l := range labels {
				if !slices.Contains(metricLabels[fam], l) && !slices.Contains(targetLabels, l) {
					t.Errorf("%s: %s has no label %s: %s", where, sel, l, expr)
				}
			}
		}
		for _, l := range q.labels {
			if !slices.Contains(allowed, l) {
				t.Errorf("%s: groups or lists by %s, which none of its metrics has: %s", where, l, expr)
			}
		}
		for _, m := range legendLabel.FindAllStringSubmatch(legend, -1) {
			if !slices.Contains(allowed, m[1]) {
				t.Errorf("%s: legend names {{%s}}, which none of its metrics has: %s", where, m[1], expr)
			}
		}
	}
	for name, v := range vars {
		if q, ok := v["query"].(string); ok && v["type"] == "query" {
			checkQuery("variable "+name, q, "")
		}
	}

	// Panels: unique ids, each on the templated data source, every query
	// checked.
	ids := map[float64]string{}
	nPanels := 0
	var panelList func([]any)
	panelList = func(ps []any) {
		for _, p := range ps {
			m, ok := p.(map[string]any)
			if !ok {
				continue
			}
			title, _ := m["title"].(string)
			id, _ := m["id"].(float64)
			if prev, dup := ids[id]; dup {
				t.Errorf("panels %q and %q share the id %v", prev, title, id)
			}
			ids[id] = title
			if m["type"] == "row" {
				sub, _ := m["panels"].([]any)
				panelList(sub)
				continue
			}
			nPanels++
			ds, _ := m["datasource"].(map[string]any)
			if ds["uid"] != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: data source %v, want ${DS_PROMETHEUS}", title, m["datasource"])
			}
			targets, _ := m["targets"].([]any)
			if len(targets) == 0 {
				t.Errorf("panel %q has no query", title)
			}
			for _, tg := range targets {
				tm, _ := tg.(map[string]any)
				expr, _ := tm["expr"].(string)
				legend, _ := tm["legendFormat"].(string)
				if expr == "" {
					t.Errorf("panel %q: a query without expr", title)
				}
				checkQuery(fmt.Sprintf("panel %q", title), expr, legend)
			}
		}
	}
	top, _ := dash["panels"].([]any)
	panelList(top)
	if nPanels == 0 {
		t.Fatal("the dashboard has no panels")
	}

	for _, fam := range slices.Sorted(maps.Keys(metricLabels)) {
		if !used[fam] {
			t.Errorf("no panel shows %s", fam)
		}
	}
}
