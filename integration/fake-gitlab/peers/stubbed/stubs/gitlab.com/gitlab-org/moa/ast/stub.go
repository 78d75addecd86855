// Package ast is a berth test stub.
package ast

type Visitor interface {
	Enter(expr Expr) (Visitor, error)
	Exit(expr Expr) (Expr, error)
}

type Expr interface {
	Walk(v Visitor) (Expr, error)
}

type Template struct{}

func (t *Template) Walk(v Visitor) (Expr, error) {
	if _, err := v.Enter(t); err != nil {
		return nil, err
	}
	return v.Exit(t)
}
