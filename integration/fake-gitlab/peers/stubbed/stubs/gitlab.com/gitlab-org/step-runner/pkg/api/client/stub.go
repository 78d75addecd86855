// Package client is a berth test stub of step-runner's client types. Native steps (`run:`)
// are not supported by berth's test build of gitlab-runner.
package client

import "time"

type Variable struct {
	Key    string
	Value  string
	File   bool
	Masked bool
}

type RunRequest struct {
	Id        string
	WorkDir   string
	BuildDir  string
	Env       map[string]string
	Variables []Variable
	Steps     string
	Timeout   *time.Duration
}

type State int

const (
	StateUnspecified State = iota
	StateRunning
	StateSuccess
	StateFailure
	StateCancelled
)

func (s State) String() string {
	return [...]string{"unspecified", "running", "success", "failure", "cancelled"}[s]
}

type ErrorKind int

const (
	ErrorUnknown ErrorKind = iota
	ErrorInternal
	ErrorStepFailure
	ErrorCancelled
	ErrorTimeout
)

type Status struct {
	Id        string
	State     State
	Message   string
	ErrorKind ErrorKind
}
