// Package proxy is a berth test stub.
package proxy

import (
	"errors"
	"io"
	"net"
)

func Proxy(io.Reader, io.Writer, net.Conn) error {
	return errors.New("step-runner is stubbed in berth's test build of gitlab-runner")
}
