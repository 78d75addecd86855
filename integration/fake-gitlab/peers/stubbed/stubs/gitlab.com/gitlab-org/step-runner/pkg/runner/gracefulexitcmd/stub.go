// Package gracefulexitcmd is a berth test stub: a plain exec.Cmd that is killed on cancel.
package gracefulexitcmd

import (
	"context"
	"os/exec"
	"time"
)

func New(ctx context.Context, delay time.Duration, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = delay
	return cmd
}
