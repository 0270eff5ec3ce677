// Command etcd is etcd's server, built from its Go module at the version kube-apiserver's own
// module graph selects, for runctl's test control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
