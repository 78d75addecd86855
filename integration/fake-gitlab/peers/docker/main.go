// A gitlab-runner main with the custom, shell and docker executors, for berth's throughput
// comparison (benches/throughput.sh).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"

	"gitlab.com/gitlab-org/gitlab-runner/commands"
	"gitlab.com/gitlab-org/gitlab-runner/commands/helpers"
	"gitlab.com/gitlab-org/gitlab-runner/common"
	"gitlab.com/gitlab-org/gitlab-runner/executors"
	"gitlab.com/gitlab-org/gitlab-runner/executors/custom"
	"gitlab.com/gitlab-org/gitlab-runner/executors/docker"
	"gitlab.com/gitlab-org/gitlab-runner/executors/shell"
	cli_helpers "gitlab.com/gitlab-org/gitlab-runner/helpers/cli"
	"gitlab.com/gitlab-org/gitlab-runner/log"
	"gitlab.com/gitlab-org/gitlab-runner/network"

	_ "gitlab.com/gitlab-org/gitlab-runner/shells"
)

func main() {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(*logrus.Entry); ok {
				os.Exit(1)
			}
			panic(r)
		}
	}()

	runnerCommand, err := os.Executable()
	if err != nil {
		panic(err)
	}
	providers := executors.NewProviderRegistry(map[string]common.ExecutorProvider{
		"shell":  shell.NewProvider(runnerCommand),
		"custom": custom.NewProvider("gitlab-runner"),
		"docker": docker.NewProvider(),
	})
	for name, provider := range providers.All() {
		if err := common.ValidateExecutorProvider(provider); err != nil {
			panic(fmt.Sprintf("Executor %s cannot be registered: %v", name, err))
		}
	}

	collector := network.NewAPIRequestsCollector()
	client := network.NewGitLabClient(
		network.WithAPIRequestsCollector(collector),
		network.WithCertificateDirectory(commands.GetDefaultCertificateDirectory()),
		network.WithExecutorProviderFunc(providers.GetByName),
	)

	app := cli.NewApp()
	app.Name = filepath.Base(os.Args[0])
	app.Usage = "a GitLab Runner (berth bench peer: custom, shell and docker executors)"
	app.Version = common.AppVersion.ShortLine()
	cli.VersionPrinter = common.AppVersion.Printer
	app.Commands = []cli.Command{
		commands.NewListCommand(),
		commands.NewRunCommand(client, collector, providers),
		commands.NewRunSingleCommand(client, providers),
		helpers.NewArtifactsDownloaderCommand(),
		helpers.NewArtifactsUploaderCommand(),
		helpers.NewCacheArchiverCommand(),
		helpers.NewCacheExtractorCommand(),
		helpers.NewCacheInitCommand(),
		helpers.NewHealthCheckCommand(),
		helpers.NewProbeURLCommand(),
		helpers.NewVerifyVersionCommand(),
		helpers.NewReadLogsCommand(),
	}
	app.CommandNotFound = func(_ *cli.Context, command string) {
		logrus.Fatalln("Command", command, "not found.")
	}
	cli_helpers.InitCli()
	cli_helpers.LogRuntimePlatform(app)
	cli_helpers.FixHOME(app)
	cli_helpers.WarnOnBool(os.Args)
	log.ConfigureLogging(app)
	if err := app.Run(os.Args); err != nil {
		logrus.Fatal(err)
	}
}
