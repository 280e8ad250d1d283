// etcdctl, exactly as etcd's own etcdctl/main.go builds it: the ctlv3 entry point of
// go.etcd.io/etcd/etcdctl/v3 at the version pinned in ../../go.mod.
package main

import (
	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
)

func main() {
	ctlv3.MustStart()
}
