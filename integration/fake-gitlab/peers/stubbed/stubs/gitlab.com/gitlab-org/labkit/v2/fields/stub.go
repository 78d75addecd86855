// Package fields is a berth test stub of labkit's log field names (the real module is not
// served by the Go module proxy reachable from berth's machines).
package fields

const (
	HTTPStatusCode = "status"
	DurationS      = "duration_s"
)

// DeprecatedField names the standard field that replaces a legacy one.
type DeprecatedField struct {
	Standard string
}

// Deprecated maps legacy field names to their replacements (none in the stub).
var Deprecated = map[string]DeprecatedField{}

// VariantVersion maps standard fields to the schema version that introduced them.
var VariantVersion = map[string]int{}

// ServiceMapping is unused by the stub.
var ServiceMapping = map[string]string{}
