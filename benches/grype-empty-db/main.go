// Writes an empty Grype v6 vulnerability database (schema, metadata, import checksums, no
// records) to the directory named by the first argument, so Grype can inventory an image
// offline: berth's scanner benchmark compares the work of reading images, not matching.
package main

import (
	"fmt"
	"os"

	db "github.com/anchore/grype/grype/db/v6"
	"github.com/spf13/afero"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grype-empty-db DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fail(err)
	}
	s, err := db.NewWriter(db.Config{DBDirPath: dir})
	if err != nil {
		fail(err)
	}
	if err := s.SetDBMetadata(); err != nil {
		fail(err)
	}
	if err := s.Close(); err != nil {
		fail(err)
	}
	if _, err := db.WriteImportMetadata(afero.NewOsFs(), dir, "berth-bench-empty"); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "grype-empty-db:", err)
	os.Exit(1)
}
