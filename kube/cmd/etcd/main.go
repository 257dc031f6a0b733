// etcd for the lab's control plane: upstream's server at the version k8s.io/kubernetes depends on
// (Debian's etcd 3.4 is too old for this kube-apiserver).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
