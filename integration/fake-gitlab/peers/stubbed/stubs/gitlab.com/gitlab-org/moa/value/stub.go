// Package value is a berth test stub of moa's values: job inputs are not supported.
package value

import (
	"encoding/json"
	"errors"
	"fmt"
)

type Kind int

const (
	NullKind Kind = iota
	StringKind
	NumberKind
	BoolKind
	ArrayKind
	ObjectKind
)

func (k Kind) String() string {
	return [...]string{"null", "string", "number", "bool", "array", "object"}[k]
}

var (
	ErrAttributeNotFound = errors.New("attribute not found")
	ErrInvalidKey        = errors.New("invalid key")
)

type Mapper interface {
	Get(key Value) (Value, error)
}

type Value struct {
	kind  Kind
	raw   string
	marks uint16
}

func String(s string) Value { return Value{kind: StringKind, raw: s} }

func Null() Value { return Value{} }

func Object(Mapper) Value { return Value{kind: ObjectKind} }

func (v Value) Kind() Kind { return v.kind }

func (v Value) String() string { return v.raw }

func (v Value) WithMarks(m uint16) Value { v.marks |= m; return v }

func (v Value) HasMarks(m uint16) bool { return v.marks&m != 0 }

func (v *Value) UnmarshalJSON(data []byte) error {
	var x any
	if err := json.Unmarshal(data, &x); err != nil {
		return err
	}
	switch t := x.(type) {
	case nil:
		*v = Value{}
	case string:
		*v = Value{kind: StringKind, raw: t}
	case float64:
		*v = Value{kind: NumberKind, raw: fmt.Sprint(t)}
	case bool:
		*v = Value{kind: BoolKind, raw: fmt.Sprint(t)}
	case []any:
		*v = Value{kind: ArrayKind, raw: string(data)}
	default:
		*v = Value{kind: ObjectKind, raw: string(data)}
	}
	return nil
}

func (v Value) MarshalJSON() ([]byte, error) {
	switch v.kind {
	case NullKind:
		return []byte("null"), nil
	case StringKind:
		return json.Marshal(v.raw)
	default:
		return []byte(v.raw), nil
	}
}
