// etcd, exactly as etcd's own server/main.go builds it: the etcdmain entry point of
// go.etcd.io/etcd/server/v3 at the version pinned in ../../go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
