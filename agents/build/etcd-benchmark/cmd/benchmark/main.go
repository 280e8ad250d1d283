// benchmark, etcd's own load tool, exactly as etcd's tools/benchmark/main.go builds it: the
// RootCmd of go.etcd.io/etcd/v3/tools/benchmark/cmd at the version pinned in ../../go.mod.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/v3/tools/benchmark/cmd"
)

func main() {
	if err := cmd.RootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(-1)
	}
}
