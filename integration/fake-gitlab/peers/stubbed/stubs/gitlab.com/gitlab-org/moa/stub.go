// Package moa is a berth test stub: job input interpolation is not supported.
package moa

import (
	"errors"

	"gitlab.com/gitlab-org/moa/ast"
)

func ParseTemplate(string) (ast.Expr, error) {
	return nil, errors.New("moa is stubbed in berth's test build of gitlab-runner")
}

func EscapeTemplate(s string) string { return s }
