// A gitlab-runner main with only the custom and shell executors (and the S3 cache adapters),
// for berth's tests.
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
	"gitlab.com/gitlab-org/gitlab-runner/executors/shell"
	cli_helpers "gitlab.com/gitlab-org/gitlab-runner/helpers/cli"
	"gitlab.com/gitlab-org/gitlab-runner/log"
	"gitlab.com/gitlab-org/gitlab-runner/network"

	_ "gitlab.com/gitlab-org/gitlab-runner/shells"

	// The distributed cache's S3 adapters ([runners.cache] Type = "s3" selects s3v2 unless
	// FF_USE_LEGACY_S3_CACHE_ADAPTER), as upstream's main registers them.
	_ "gitlab.com/gitlab-org/gitlab-runner/cache/s3"
	_ "gitlab.com/gitlab-org/gitlab-runner/cache/s3v2"
)

// Executors a build adds to the custom and shell ones (docker/executor.go for the bench peer),
// and how the binary describes itself.
var (
	extraProviders = map[string]common.ExecutorProvider{}
	usage          = "a GitLab Runner (berth test peer: custom and shell executors only)"
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
	registered := map[string]common.ExecutorProvider{
		"shell":  shell.NewProvider(runnerCommand),
		"custom": custom.NewProvider("gitlab-runner"),
	}
	for name, provider := range extraProviders {
		registered[name] = provider
	}
	providers := executors.NewProviderRegistry(registered)
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
	app.Usage = usage
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
