// Comparison for the benches (tests/bench/informer.rs): a client-go informer on Secrets in
// every namespace, built the way typical secret tools build one, and a controller-runtime
// manager caching the PasswordRotations, so their memory can be measured beside the
// operator's on the same cluster.
//
//	--mode full                a SharedInformer on core/v1 Secrets (whole objects cached)
//	--mode metadata            a metadata-only informer on secrets (PartialObjectMetadata cached)
//	--mode controller-runtime  a manager whose cache holds every PasswordRotation (as
//	                           unstructured objects: the CRD has no Go types here)
//
// Prints "synced <objects in the store>" once the initial list is in the cache, then
// blocks until killed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

func main() {
	// controller-runtime defines --kubeconfig on the global flag set when it loads.
	if flag.Lookup("kubeconfig") == nil {
		flag.String("kubeconfig", "", "path to the kubeconfig")
	}
	mode := flag.String("mode", "full", "full, metadata or controller-runtime")
	flag.Parse()
	if err := run(flag.Lookup("kubeconfig").Value.String(), *mode); err != nil {
		fmt.Fprintf(os.Stderr, "informer: %v\n", err)
		os.Exit(1)
	}
}

func run(kubeconfig, mode string) error {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if mode == "controller-runtime" {
		return controllerRuntime(ctx, config)
	}
	var informer cache.SharedIndexInformer
	switch mode {
	case "full":
		clientset, err := kubernetes.NewForConfig(config)
		if err != nil {
			return err
		}
		factory := informers.NewSharedInformerFactory(clientset, 0)
		informer = factory.Core().V1().Secrets().Informer()
		if err := addNoopHandler(informer); err != nil {
			return err
		}
		factory.Start(ctx.Done())
	case "metadata":
		client, err := metadata.NewForConfig(config)
		if err != nil {
			return err
		}
		factory := metadatainformer.NewSharedInformerFactory(client, 0)
		informer = factory.ForResource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Informer()
		if err := addNoopHandler(informer); err != nil {
			return err
		}
		factory.Start(ctx.Done())
	default:
		return fmt.Errorf("unknown --mode %q (full, metadata or controller-runtime)", mode)
	}

	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return fmt.Errorf("stopped before the cache synced")
	}
	// os.Stdout is unbuffered: the line reaches the reader at once.
	if _, err := fmt.Printf("synced %d\n", len(informer.GetStore().ListKeys())); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func addNoopHandler(informer cache.SharedIndexInformer) error {
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) {},
		UpdateFunc: func(_, _ any) {},
		DeleteFunc: func(any) {},
	})
	return err
}

// controllerRuntime caches every PasswordRotation in a manager, as a controller built with
// controller-runtime (kubebuilder) does before its first reconcile.
func controllerRuntime(ctx context.Context, config *rest.Config) error {
	manager, err := ctrl.NewManager(config, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	gvk := schema.GroupVersionKind{Group: "rotator.dev", Version: "v1alpha2", Kind: "PasswordRotation"}
	rotation := &unstructured.Unstructured{}
	rotation.SetGroupVersionKind(gvk)
	informer, err := manager.GetCache().GetInformer(ctx, rotation)
	if err != nil {
		return fmt.Errorf("the PasswordRotation informer: %w", err)
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) {},
		UpdateFunc: func(_, _ any) {},
		DeleteFunc: func(any) {},
	}); err != nil {
		return err
	}
	started := make(chan error, 1)
	go func() { started <- manager.Start(ctx) }()
	if !manager.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("stopped before the cache synced")
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind("PasswordRotationList"))
	if err := manager.GetCache().List(ctx, list); err != nil {
		return fmt.Errorf("listing the cache: %w", err)
	}
	if _, err := fmt.Printf("synced %d\n", len(list.Items)); err != nil {
		return err
	}
	return <-started
}
