// Package snowplow is a berth test stub: usage events are never sent.
package snowplow

import (
	"errors"

	"gitlab.com/gitlab-org/labkit/v2/events/snowplow/metrics"
	"gitlab.com/gitlab-org/labkit/v2/events/snowplow/oidc"
)

var errStub = errors.New("snowplow is stubbed in berth's test build of gitlab-runner")

type SendResult struct {
	EventCount int
	StatusCode int
	Err        error
}

type SendCallback func(successes []SendResult, failures []SendResult)

type Emitter struct{}

type Tracker struct{}

type EmitterOption func(*Emitter)

func WithCallback(SendCallback) EmitterOption { return func(*Emitter) {} }

func WithTokenSource(oidc.TokenSource) EmitterOption { return func(*Emitter) {} }

func WithMetricsCollectorOptions(...metrics.CollectorOption) EmitterOption {
	return func(*Emitter) {}
}

func NewEmitter(string, ...EmitterOption) (*Emitter, error) { return nil, errStub }

func NewTracker(string, *Emitter) (*Tracker, error) { return nil, errStub }

func (*Emitter) Collector() metrics.Collector { return nil }

type BillingEventRequiredInput struct {
	Category      string
	EventType     string
	Realm         string
	UnitOfMeasure string
	Quantity      float64
}

type BillingEventOptionalInput struct {
	Subject          string
	DeploymentType   string
	Metadata         map[string]any
	InstanceID       string
	UniqueInstanceID string
	ProjectID        int64
	NamespaceID      int64
	RootNamespaceID  int64
	OrganizationID   int64
}

func (*Tracker) TrackBillingEventWithOptionalInput(BillingEventRequiredInput, BillingEventOptionalInput) error {
	return errStub
}

func (*Tracker) Stop() {}
