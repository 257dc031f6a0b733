// CoreDNS for the lab's cluster DNS (acklab/k8s/cluster_dns.py): upstream's coremain with only the plugins the
// lab's Corefile uses. Upstream's main imports core/plugin, which links every plugin (route53, azure, clouddns,
// etcd, ... and their SDKs); here each kept plugin is imported on its own and dnsserver.Directives is cut to
// them, in upstream's order (core/dnsserver/zdirectives.go: the order plugins run in). No forward: the lab is
// sealed, so names outside the cluster's zones get no answer from elsewhere.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
)

// kept lists the plugins imported above by their directive names.
var kept = map[string]bool{
	"bind": true, "ready": true, "health": true, "prometheus": true, "errors": true,
	"log": true, "loadbalance": true, "cache": true, "kubernetes": true,
}

func init() {
	directives := make([]string, 0, len(kept))
	for _, name := range dnsserver.Directives { // upstream's order, filtered
		if kept[name] {
			directives = append(directives, name)
		}
	}
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
