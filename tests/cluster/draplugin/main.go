// Command draplugin is a minimal kubelet DRA plugin used only by the local-cluster smoke test
// (tests/cluster/test_cdi.py). It registers with the kubelet under the given driver name and, on
// NodePrepareResources, writes one CDI spec per claim that injects an environment variable and
// bind-mounts a file naming the claim; NodeUnprepareResources deletes both again.
//
// It publishes no ResourceSlices: the test creates those itself.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"
)

const cdiVendor = "cluster-test.space-dra.dev"
const cdiClass = "device"

type plugin struct {
	driver   string
	cdiDir   string
	stateDir string
	mu       sync.Mutex
}

// cdiSpec is the subset of the CDI specification this plugin writes.
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

func (p *plugin) specPath(uid types.UID) string {
	return filepath.Join(p.cdiDir, fmt.Sprintf("%s-%s.json", strings.ReplaceAll(p.driver, "/", "_"), uid))
}

func (p *plugin) prepareOne(claim *resourceapi.ResourceClaim) kubeletplugin.PrepareResult {
	if claim.Status.Allocation == nil {
		return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)}
	}
	dir := filepath.Join(p.stateDir, string(claim.UID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return kubeletplugin.PrepareResult{Err: err}
	}
	spec := cdiSpec{Version: "0.5.0", Kind: cdiVendor + "/" + cdiClass}
	var devices []kubeletplugin.Device
	for _, r := range claim.Status.Allocation.Devices.Results {
		if r.Driver != p.driver {
			continue
		}
		payload := filepath.Join(dir, r.Device+".txt")
		content := fmt.Sprintf("claim=%s/%s device=%s pool=%s\n", claim.Namespace, claim.Name, r.Device, r.Pool)
		if err := os.WriteFile(payload, []byte(content), 0o644); err != nil {
			return kubeletplugin.PrepareResult{Err: err}
		}
		name := fmt.Sprintf("%s-%s", claim.UID, r.Device)
		spec.Devices = append(spec.Devices, cdiDevice{
			Name: name,
			ContainerEdits: cdiEdits{
				Env: []string{
					"SPACE_DRA_TEST_DEVICE=" + r.Device,
					"SPACE_DRA_TEST_CLAIM=" + claim.Namespace + "/" + claim.Name,
				},
				Mounts: []cdiMount{{
					HostPath:      payload,
					ContainerPath: "/run/space-dra-test/" + r.Device + ".txt",
					Options:       []string{"ro", "bind"},
				}},
			},
		})
		devices = append(devices, kubeletplugin.Device{
			Requests:     []string{r.Request},
			PoolName:     r.Pool,
			DeviceName:   r.Device,
			CDIDeviceIDs: []string{cdiVendor + "/" + cdiClass + "=" + name},
		})
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return kubeletplugin.PrepareResult{Err: err}
	}
	tmp := p.specPath(claim.UID) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return kubeletplugin.PrepareResult{Err: err}
	}
	if err := os.Rename(tmp, p.specPath(claim.UID)); err != nil {
		return kubeletplugin.PrepareResult{Err: err}
	}
	fmt.Printf("prepared %s/%s uid=%s devices=%d\n", claim.Namespace, claim.Name, claim.UID, len(devices))
	return kubeletplugin.PrepareResult{Devices: devices}
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
		if rmErr := os.RemoveAll(filepath.Join(p.stateDir, string(claim.UID))); err == nil {
			err = rmErr
		}
		result[claim.UID] = err
		fmt.Printf("unprepared %s uid=%s err=%v\n", claim.NamespacedName, claim.UID, err)
	}
	return result, nil
}

func (p *plugin) HandleError(ctx context.Context, err error, msg string) {
	klog.FromContext(ctx).Error(err, msg)
}

// WatchHealthStatus opts out of device health reporting: the smoke test has no health to report.
func (p *plugin) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}

func main() {
	driver := flag.String("driver", "", "DRA driver name")
	node := flag.String("node", "", "node name")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig used to read ResourceClaims")
	cdiDir := flag.String("cdi-dir", "/var/run/cdi", "where CDI specs are written")
	klog.InitFlags(nil)
	flag.Parse()
	if *driver == "" || *node == "" || *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "-driver, -node and -kubeconfig are required")
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
	dataDir := filepath.Join(kubeletplugin.KubeletPluginsDir, *driver)
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		klog.Fatal(err)
	}
	if err := os.MkdirAll(*cdiDir, 0o755); err != nil {
		klog.Fatal(err)
	}
	p := &plugin{driver: *driver, cdiDir: *cdiDir, stateDir: filepath.Join(dataDir, "claims")}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	helper, err := kubeletplugin.Start(ctx, p,
		kubeletplugin.DriverName(*driver),
		kubeletplugin.NodeName(*node),
		kubeletplugin.KubeClient(client),
		kubeletplugin.PluginDataDirectoryPath(dataDir),
	)
	if err != nil {
		klog.Fatal(err)
	}
	defer helper.Stop()
	announced := false
	for {
		select {
		case <-ctx.Done():
			fmt.Println("stopping")
			return
		case <-time.After(100 * time.Millisecond):
		}
		if st := helper.RegistrationStatus(); !announced && st != nil && st.PluginRegistered {
			fmt.Println("registered with kubelet")
			announced = true
		}
	}
}
