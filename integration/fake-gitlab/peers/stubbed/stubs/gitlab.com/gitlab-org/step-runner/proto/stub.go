// Package proto is a berth test stub of step-runner's protocol types.
package proto

import (
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

type ValueType int32

const (
	ValueType_raw_string ValueType = iota
	ValueType_string
	ValueType_number
	ValueType_boolean
	ValueType_struct
	ValueType_array
)

type Spec_Content_Input struct {
	Type      ValueType
	Default   *structpb.Value
	Sensitive bool
}

type Spec_Content struct {
	Inputs map[string]*Spec_Content_Input
}

func (c *Spec_Content) GetInputs() map[string]*Spec_Content_Input {
	if c == nil {
		return nil
	}
	return c.Inputs
}

type Spec struct {
	Spec *Spec_Content
}

func (s *Spec) GetSpec() *Spec_Content {
	if s == nil {
		return nil
	}
	return s.Spec
}

type StepRunnerServer interface{}

func RegisterStepRunnerServer(grpc.ServiceRegistrar, StepRunnerServer) {}
