// Package di is a berth test stub.
package di

import (
	"errors"
	"log/slog"

	"gitlab.com/gitlab-org/step-runner/pkg/runner"
	"gitlab.com/gitlab-org/step-runner/proto"
)

type Container struct{}

func WithBuiltinFunc(string, runner.BuiltinFunction) func(*Container) { return func(*Container) {} }

func WithOperatorLogger(*slog.Logger) func(*Container) { return func(*Container) {} }

func NewContainer(...func(*Container)) *Container { return &Container{} }

func (*Container) StepRunnerService() (proto.StepRunnerServer, error) {
	return nil, errors.New("step-runner is stubbed in berth's test build of gitlab-runner")
}
