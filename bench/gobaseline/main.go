// Command gobaseline is the benchmark's reference point: a kubelet DRA plugin written in Go on
// the upstream helper library (k8s.io/dynamic-resource-allocation/kubeletplugin) that does the
// same node-side work per claim as the Space driver's plugin, minus the namespace:
//
//   - a directory of four small files (kubeconfig, token, ca.crt, namespace) published the way
//     the kubelet publishes projected volumes (a hidden generation directory, an atomically
//     renamed ..data symlink, one symlink per visible name);
//   - a CDI spec (written to a temporary name and renamed) whose device sets the same
//     environment variables as ours (DRA_RESOURCE_DRIVER_NAME, <PREFIX>_CLUSTER,
//     <PREFIX>_NAMESPACE, <PREFIX>_KUBECONFIG) and bind-mounts that directory read-only;
//   - a checkpoint of the prepared claims, rewritten atomically on every change.
//
// It publishes one node-local pool of -devices devices through the helper, so a DeviceClass
// selecting its driver name gives claims to it. Measured side by side with our plugin and its
// Python twin (bench/twin_driver.py), it separates the cost of Python and our protocol layer
// from the cost of provisioning namespaces.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
)

const (
	cdiVersion           = "0.6.0"
	cdiClass             = "baseline"
	podClaimNameKey      = "resource.kubernetes.io/pod-claim-name"
	dataLink             = "..data"
	fakeServer           = "https://kubernetes.default.svc"
	checkpointFileName   = "checkpoint.json"
	checkpointAPIVersion = "gobaseline/v1"
)

var nonEnv = regexp.MustCompile(`[^A-Za-z0-9_]`)

type plugin struct {
	driver     string
	cdiDir     string
	artifacts  string
	checkpoint string

	mu       sync.Mutex
	prepared map[types.UID][]string // claim UID -> CDI device IDs
}

type cdiSpec struct {
	Version string      `json:"cdiVersion"`
	Kind    string      `json:"kind"`
	Devices []cdiDevice `json:"devices"`
}

type cdiDevice struct {
	Name           string   `json:"name"`
	ContainerEdits cdiEdits `json:"containerEdits"`
}

type cdiEdits struct {
	Env    []string   `json:"env,omitempty"`
	Mounts []cdiMount `json:"mounts,omitempty"`
}

type cdiMount struct {
	HostPath      string   `json:"hostPath"`
	ContainerPath string   `json:"containerPath"`
	Options       []string `json:"options,omitempty"`
}

type checkpointFile struct {
	APIVersion string                 `json:"apiVersion"`
	Claims     map[types.UID][]string `json:"claims"`
}

// displayName is what our driver derives env names and the mount path from: the pod's name
// for the claim when it was generated from a template, else the claim's own name.
func displayName(claim *resourceapi.ResourceClaim) string {
	if name := claim.Annotations[podClaimNameKey]; name != "" {
		return name
	}
	return claim.Name
}

func (p *plugin) specPath(uid types.UID) string {
	return filepath.Join(p.cdiDir, fmt.Sprintf("%s-%s.json", p.driver, uid))
}

// writeAtomically writes data to a temporary sibling and renames it over path.
func writeAtomically(path string, data []byte, mode os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// publish writes one generation of files into dir and switches ..data to it in one rename.
func publish(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	generation, err := os.MkdirTemp(dir, ".."+time.Now().Format("2006_01_02_15_04_05")+".")
	if err != nil {
		return err
	}
	if err := os.Chmod(generation, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(generation, name), content, 0o644); err != nil {
			return err
		}
	}
	staging := filepath.Join(dir, dataLink+"_tmp")
	_ = os.Remove(staging)
	if err := os.Symlink(filepath.Base(generation), staging); err != nil {
		return err
	}
	if err := os.Rename(staging, filepath.Join(dir, dataLink)); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(dataLink+"/"+name, link); err != nil {
			return err
		}
	}
	return nil
}

func (p *plugin) saveCheckpoint() error {
	data, err := json.Marshal(checkpointFile{APIVersion: checkpointAPIVersion, Claims: p.prepared})
	if err != nil {
		return err
	}
	return writeAtomically(p.checkpoint, data, 0o600)
}

func (p *plugin) prepareOne(claim *resourceapi.ResourceClaim) kubeletplugin.PrepareResult {
	if ids, ok := p.prepared[claim.UID]; ok {
		return kubeletplugin.PrepareResult{Devices: devicesFor(claim, p.driver, ids)}
	}
	if claim.Status.Allocation == nil {
		return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)}
	}
	name := displayName(claim)
	prefix := strings.ToUpper(nonEnv.ReplaceAllString(name, "_"))
	mountPath := "/etc/" + name
	namespace := "baseline-" + string(claim.UID)[:8]
	dir := filepath.Join(p.artifacts, string(claim.UID))
	files := map[string][]byte{
		"kubeconfig": []byte(fmt.Sprintf(
			"apiVersion: v1\nkind: Config\nclusters:\n- name: b\n  cluster: {server: %q}\n"+
				"users:\n- name: b\n  user: {tokenFile: %q}\ncontexts:\n- name: b\n"+
				"  context: {cluster: b, user: b, namespace: %q}\ncurrent-context: b\n",
			fakeServer, mountPath+"/token", namespace)),
		"token":     []byte("baseline-token-" + string(claim.UID)),
		"ca.crt":    []byte("-----BEGIN CERTIFICATE-----\nbaseline\n-----END CERTIFICATE-----\n"),
		"namespace": []byte(namespace),
	}
	if err := publish(dir, files); err != nil {
		return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s: artifacts: %w", claim.UID, err)}
	}
	spec := cdiSpec{Version: cdiVersion, Kind: p.driver + "/" + cdiClass}
	var ids []string
	for _, r := range claim.Status.Allocation.Devices.Results {
		if r.Driver != p.driver {
			continue
		}
		deviceName := fmt.Sprintf("%s-%s", claim.UID, r.Device)
		spec.Devices = append(spec.Devices, cdiDevice{
			Name: deviceName,
			ContainerEdits: cdiEdits{
				Env: []string{
					"DRA_RESOURCE_DRIVER_NAME=" + p.driver,
					prefix + "_CLUSTER=" + fakeServer,
					prefix + "_NAMESPACE=" + namespace,
					prefix + "_KUBECONFIG=" + mountPath + "/kubeconfig",
				},
				Mounts: []cdiMount{{
					HostPath:      dir,
					ContainerPath: mountPath,
					Options:       []string{"ro", "nosuid", "nodev", "noexec", "bind"},
				}},
			},
		})
		ids = append(ids, p.driver+"/"+cdiClass+"="+deviceName)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err == nil {
		err = writeAtomically(p.specPath(claim.UID), data, 0o644)
	}
	if err == nil {
		p.prepared[claim.UID] = ids
		err = p.saveCheckpoint()
	}
	if err != nil {
		delete(p.prepared, claim.UID)
		_ = os.Remove(p.specPath(claim.UID))
		_ = os.RemoveAll(dir)
		return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s: %w", claim.UID, err)}
	}
	return kubeletplugin.PrepareResult{Devices: devicesFor(claim, p.driver, ids)}
}

// devicesFor pairs the allocation results of our driver with their CDI device IDs, in order.
func devicesFor(claim *resourceapi.ResourceClaim, driver string, ids []string) []kubeletplugin.Device {
	var devices []kubeletplugin.Device
	i := 0
	for _, r := range claim.Status.Allocation.Devices.Results {
		if r.Driver != driver || i >= len(ids) {
			continue
		}
		devices = append(devices, kubeletplugin.Device{
			Requests:     []string{r.Request},
			PoolName:     r.Pool,
			DeviceName:   r.Device,
			CDIDeviceIDs: []string{ids[i]},
		})
		i++
	}
	return devices
}

func (p *plugin) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	result := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, claim := range claims {
		result[claim.UID] = p.prepareOne(claim)
	}
	return result, nil
}

func (p *plugin) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	result := make(map[types.UID]error, len(claims))
	for _, claim := range claims {
		err := os.Remove(p.specPath(claim.UID))
		if os.IsNotExist(err) {
			err = nil
		}
		if rmErr := os.RemoveAll(filepath.Join(p.artifacts, string(claim.UID))); err == nil {
			err = rmErr
		}
		delete(p.prepared, claim.UID)
		if cpErr := p.saveCheckpoint(); err == nil {
			err = cpErr
		}
		result[claim.UID] = err
	}
	return result, nil
}

func (p *plugin) HandleError(ctx context.Context, err error, msg string) {
	klog.FromContext(ctx).Error(err, msg)
}

// WatchHealthStatus opts out of device health reporting (kubeletplugin v0.37 requires the method):
// the baseline measures prepare and unprepare only.
func (p *plugin) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}

func pool(node string, size int) resourceslice.DriverResources {
	devices := make([]resourceapi.Device, size)
	for i := range devices {
		devices[i] = resourceapi.Device{Name: fmt.Sprintf("slot-%d", i)}
	}
	return resourceslice.DriverResources{
		Pools: map[string]resourceslice.Pool{
			node: {Slices: []resourceslice.Slice{{Devices: devices}}},
		},
	}
}

func main() {
	driver := flag.String("driver", "gobaseline.bench.space.example.com", "DRA driver name")
	node := flag.String("node", "", "node name (required)")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig (empty: in-cluster)")
	cdiDir := flag.String("cdi-dir", "/var/run/cdi", "where CDI specs are written")
	artifacts := flag.String("artifact-dir", "/var/run/gobaseline-artifacts", "per-claim file directories")
	pluginsDir := flag.String("plugins-dir", kubeletplugin.KubeletPluginsDir, "kubelet plugins directory")
	registrarDir := flag.String("registrar-dir", kubeletplugin.KubeletRegistryDir, "kubelet plugin registry directory")
	size := flag.Int("devices", 64, "devices in this node's pool")
	klog.InitFlags(nil)
	flag.Parse()
	if *node == "" {
		fmt.Fprintln(os.Stderr, "-node is required")
		os.Exit(2)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.Fatal(err)
	}
	dataDir := filepath.Join(*pluginsDir, *driver)
	for _, dir := range []string{dataDir, *cdiDir, *artifacts} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			klog.Fatal(err)
		}
	}
	p := &plugin{
		driver:     *driver,
		cdiDir:     *cdiDir,
		artifacts:  *artifacts,
		checkpoint: filepath.Join(dataDir, checkpointFileName),
		prepared:   map[types.UID][]string{},
	}
	if data, err := os.ReadFile(p.checkpoint); err == nil {
		var saved checkpointFile
		if json.Unmarshal(data, &saved) == nil && saved.APIVersion == checkpointAPIVersion && saved.Claims != nil {
			p.prepared = saved.Claims
		} else {
			klog.Warningf("ignoring unreadable checkpoint %s", p.checkpoint)
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	helper, err := kubeletplugin.Start(ctx, p,
		kubeletplugin.DriverName(*driver),
		kubeletplugin.NodeName(*node),
		kubeletplugin.KubeClient(client),
		kubeletplugin.PluginDataDirectoryPath(dataDir),
		kubeletplugin.RegistrarDirectoryPath(*registrarDir),
	)
	if err != nil {
		klog.Fatal(err)
	}
	defer helper.Stop()
	if err := helper.PublishResources(ctx, pool(*node, *size)); err != nil {
		klog.Fatal(err)
	}
	<-ctx.Done()
}
