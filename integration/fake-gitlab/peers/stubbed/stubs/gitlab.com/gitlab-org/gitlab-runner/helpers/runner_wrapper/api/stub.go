// Package api is a berth test stub of the runner wrapper's API (the wrapper command is not
// part of berth's test build).
package api

import (
	"context"
	"errors"

	"github.com/sirupsen/logrus"
)

type Status int

const (
	StatusUnknown Status = iota
	StatusRunning
	StatusInShutdown
	StatusStopped
)

func (s Status) String() string {
	switch s {
	case StatusRunning:
		return "running"
	case StatusInShutdown:
		return "in_shutdown"
	case StatusStopped:
		return "stopped"
	default:
		return "unknown"
	}
}

var ErrProcessNotInitialized = errors.New("process not initialized")

type ShutdownCallbackDef interface {
	URL() string
	Method() string
	Data() map[string]string
}

type InitGracefulShutdownRequest interface {
	ShutdownCallbackDef() ShutdownCallbackDef
}

type ShutdownCallback interface {
	Run(ctx context.Context)
}

type noopCallback struct{}

func (noopCallback) Run(context.Context) {}

func NewShutdownCallback(logrus.FieldLogger, ShutdownCallbackDef) ShutdownCallback {
	return noopCallback{}
}
