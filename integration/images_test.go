package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The container suites build every image they run on this machine: no
// registry is needed. Each image name can be overridden (SLUICE_IMAGE,
// MOCKLLM_IMAGE, REDIS_IMAGE, JAEGER_IMAGE) to use published images
// instead. Built images are kept and reused by later runs, except Sluice's
// and mockllm's own, which are rebuilt from the source under test.
type imageSet struct {
	sluice, mockllm, redis, jaeger string
}

var (
	imagesOnce  sync.Once
	imagesBuilt imageSet
	imagesErr   error
	dockerOnce  sync.Once
	dockerErr   error
)

// requireDocker skips the test when no Docker engine answers, unless
// SLUICE_REQUIRE_DOCKER is set (as in CI), in which case it fails.
func requireDocker(t *testing.T) {
	t.Helper()
	dockerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
		if err != nil {
			dockerErr = fmt.Errorf("no Docker engine reachable: %v: %s", err, bytes.TrimSpace(out))
		}
	})
	if dockerErr == nil {
		return
	}
	if os.Getenv("SLUICE_REQUIRE_DOCKER") != "" {
		t.Fatalf("SLUICE_REQUIRE_DOCKER is set: %v", dockerErr)
	}
	t.Skipf("skipping the container suite: %v (set SLUICE_REQUIRE_DOCKER=1 to make this a failure)", dockerErr)
}

// images returns the images of the suite, building what is missing.
func images(t *testing.T) imageSet {
	t.Helper()
	requireDocker(t)
	imagesOnce.Do(func() { imagesBuilt, imagesErr = buildImages() })
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
	return imagesBuilt
}

func buildImages() (imageSet, error) {
	var s imageSet
	var err error
	if s.sluice, err = goImage("SLUICE_IMAGE", "sluice-it/sluice:dev", "../cmd/sluice"); err != nil {
		return s, err
	}
	if s.mockllm, err = goImage("MOCKLLM_IMAGE", "sluice-it/mockllm:dev", "../cmd/mockllm"); err != nil {
		return s, err
	}
	if s.redis, err = redisImage(); err != nil {
		return s, err
	}
	if s.jaeger, err = jaegerImage(); err != nil {
		return s, err
	}
	return s, nil
}

// goImage builds a static binary of this repository into the same minimal
// image deploy/docker/Dockerfile.binary describes.
func goImage(env, tag, pkg string) (string, error) {
	if v := os.Getenv(env); v != "" {
		return v, nil
	}
	dir, err := os.MkdirTemp("", "sluice-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "app"), pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	if err := copyFile("/etc/ssl/certs/ca-certificates.crt", filepath.Join(dir, "ca-certificates.crt")); err != nil {
		return "", fmt.Errorf("CA certificates for %s: %w", tag, err)
	}
	return tag, dockerBuild(tag, dir, "../deploy/docker/Dockerfile.binary", "--build-arg", "BINARY=app")
}

// redisImage packs the host's redis-server and the shared libraries it
// needs into a scratch image, once per machine and Redis version.
func redisImage() (string, error) {
	if v := os.Getenv("REDIS_IMAGE"); v != "" {
		return v, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server is not installed (apt-get install redis-server): the Redis image is built from it")
	}
	out, _ := exec.Command(bin, "--version").Output()
	version := regexp.MustCompile(`v=([0-9.]+)`).FindStringSubmatch(string(out))
	if version == nil {
		return "", fmt.Errorf("redis-server --version: %q", out)
	}
	tag := "sluice-it/redis:" + version[1]
	if imageExists(tag) {
		return tag, nil
	}
	dir, err := os.MkdirTemp("", "sluice-redis-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "rootfs")
	files, err := sharedLibraries(bin)
	if err != nil {
		return "", err
	}
	for _, f := range append(files, bin) {
		real, err := filepath.EvalSymlinks(f)
		if err != nil {
			return "", err
		}
		if err := copyFile(real, filepath.Join(root, f)); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o777); err != nil {
		return "", err
	}
	dockerfile := fmt.Sprintf(`FROM scratch
COPY rootfs/ /
WORKDIR /data
EXPOSE 6379
ENTRYPOINT [%q, "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
`, bin)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	return tag, dockerBuild(tag, dir, filepath.Join(dir, "Dockerfile"))
}

// sharedLibraries lists the libraries (and the loader) a binary loads.
func sharedLibraries(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	return libs, nil
}

// jaegerImage builds Jaeger from its Go module (integration/tools pins the
// version) into a scratch image, once per machine: a cold build takes
// minutes.
func jaegerImage() (string, error) {
	if v := os.Getenv("JAEGER_IMAGE"); v != "" {
		return v, nil
	}
	const tag = "sluice-it/jaeger:1.76.0-local"
	if imageExists(tag) {
		return tag, nil
	}
	dir, err := os.MkdirTemp("", "sluice-jaeger-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "jaeger"), "github.com/jaegertracing/jaeger/cmd/jaeger")
	build.Dir = "tools"
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build jaeger: %v\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "built jaeger in %v\n", time.Since(start).Round(time.Second))
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o777); err != nil {
		return "", err
	}
	dockerfile := `FROM scratch
COPY jaeger /jaeger
COPY tmp /tmp
# All-in-one listens on localhost unless told otherwise.
ENV JAEGER_LISTEN_HOST=0.0.0.0
EXPOSE 4317 4318 16686
ENTRYPOINT ["/jaeger"]
`
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	return tag, dockerBuild(tag, dir, filepath.Join(dir, "Dockerfile"))
}

func imageExists(tag string) bool {
	return exec.Command("docker", "image", "inspect", tag).Run() == nil
}

func dockerBuild(tag, dir, dockerfile string, args ...string) error {
	abs, err := filepath.Abs(dockerfile)
	if err != nil {
		return err
	}
	cmd := exec.Command("docker", append([]string{"build", "-q", "-t", tag, "-f", abs}, append(args, dir)...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker build %s: %v\n%s", tag, err, out)
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, info.Mode().Perm()|0o444)
}
