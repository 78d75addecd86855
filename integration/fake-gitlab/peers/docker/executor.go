// The bench peer's addition to stubbed/main.go: GitLab's Docker executor, for berth's
// throughput comparison (benches/throughput.sh).

package main

import "gitlab.com/gitlab-org/gitlab-runner/executors/docker"

func init() {
	extraProviders["docker"] = docker.NewProvider()
	usage = "a GitLab Runner (berth bench peer: custom, shell and docker executors)"
}
