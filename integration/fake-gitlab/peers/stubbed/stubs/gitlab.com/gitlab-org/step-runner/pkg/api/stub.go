// Package api is a berth test stub.
package api

import (
	"net"
	"os"
	"path/filepath"
)

func SocketAddr(path string) *net.UnixAddr { return &net.UnixAddr{Name: path, Net: "unix"} }

func DefaultSocketPath() string { return filepath.Join(os.TempDir(), "step-runner.sock") }
