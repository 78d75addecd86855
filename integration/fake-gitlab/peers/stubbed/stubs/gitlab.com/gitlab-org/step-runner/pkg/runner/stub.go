// Package runner is a berth test stub of step-runner's builtin function interface.
package runner

import (
	"context"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"gitlab.com/gitlab-org/step-runner/proto"
)

type Kind int

const (
	KindString Kind = iota
	KindBool
	KindList
	KindStruct
	KindNumber
)

type BuiltinResult struct{}

type BuiltinContext interface {
	GetInput(name string, kind Kind) (*structpb.Value, error)
	GetInputWithDefault(name string, kind Kind, inputs map[string]*proto.Spec_Content_Input) (*structpb.Value, error)
	GetJobVars() map[string]*structpb.Value
	GetEnvs() map[string]string
	GetEnvList() []string
	Pipe() (io.Writer, io.Writer)
	WorkDir() string
	GracefulExitDelay() time.Duration
	ListenCancel(ctx context.Context) (context.Context, context.CancelFunc)
}

type BuiltinFunction interface {
	Spec() *proto.Spec
	Run(ctx context.Context, builtinCtx BuiltinContext) (BuiltinResult, error)
}
