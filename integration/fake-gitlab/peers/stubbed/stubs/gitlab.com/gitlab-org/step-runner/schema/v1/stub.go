// Package schema is a berth test stub of step-runner's step schema.
package schema

type StepInputs map[string]any

type Step struct {
	Name   *string           `json:"name,omitempty" yaml:"name,omitempty"`
	Step   any               `json:"step,omitempty" yaml:"step,omitempty"`
	Script *string           `json:"script,omitempty" yaml:"script,omitempty"`
	Inputs StepInputs        `json:"inputs,omitempty" yaml:"inputs,omitempty"`
	Env    map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	Run    []Step            `json:"run,omitempty" yaml:"run,omitempty"`
}
