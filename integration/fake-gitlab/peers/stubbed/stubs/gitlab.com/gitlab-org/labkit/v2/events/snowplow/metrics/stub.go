// Package metrics is a berth test stub.
package metrics

import "github.com/prometheus/client_golang/prometheus"

type CollectorOption func(*collector)

type collector struct{}

// Collector is a Prometheus collector.
type Collector = prometheus.Collector

func WithCollectorNamespace(string) CollectorOption { return func(*collector) {} }

func WithCollectorBatchDeliveryDurationBuckets([]float64) CollectorOption {
	return func(*collector) {}
}
