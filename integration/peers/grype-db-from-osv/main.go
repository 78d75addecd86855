// grype-db-from-osv writes a Grype v6 vulnerability DB from a directory of OSV JSON records, with
// Grype's own DB builder (github.com/anchore/grype/grype/db: the processors and transformers
// grype-db runs on vunnel's output), so the parity tests can run Grype offline on the advisories
// berth reads.
//
//	grype-db-from-osv OSV_DIR OUT_DIR   writes OUT_DIR/vulnerability.db; `grype db import` takes it
//	grype-db-from-osv --version
//
// Grype's builder reads vunnel provider workspaces, one schema per provider. Each record goes to
// the transformer Grype uses for that kind of data:
//
//   - a record with a distribution ecosystem (Debian:12, Alpine:v3.19, Ubuntu:22.04) becomes a
//     vunnel "os" record (the transformer Grype's debian/alpine/ubuntu providers feed), as vunnel
//     writes them: named after the CVE, one FixedIn per package with the fixed version or "None",
//     the urgency as Severity (Debian's mapping), no CVSS (Grype takes NVD's from the nvd
//     provider);
//   - a GHSA record becomes a vunnel "github-security-advisory" record: one FixedIn per affected
//     range, GitHub's range syntax, the first fixed version as identifier ("None" without one);
//   - every other record (PYSEC, RUSTSEC, GO, ...) goes unchanged through Grype's "osv"
//     transformer, which keeps only the providers it has a strategy for (ALSA, BIT, GO, ROOT, CGA)
//     and drops the rest.
//
// It prints one line per record: its id, the provider and schema it went to.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	grypedb "github.com/anchore/grype/grype/db"
	"github.com/anchore/grype/grype/db/provider"
)

const (
	schemaBase   = "https://raw.githubusercontent.com/anchore/vunnel/main/schema/"
	osSchema     = schemaBase + "vulnerability/os/schema-1.1.0.json"
	githubSchema = schemaBase + "vulnerability/github-security-advisory/schema-1.0.3.json"
	osvSchema    = schemaBase + "vulnerability/osv/schema-1.7.0.json"
	stateSchema  = schemaBase + "provider-workspace-state/schema-1.0.2.json"
)

type event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
}

type osvRecord struct {
	ID        string   `json:"id"`
	Aliases   []string `json:"aliases"`
	Upstream  []string `json:"upstream"`
	Summary   string   `json:"summary"`
	Details   string   `json:"details"`
	Published string   `json:"published"`
	Modified  string   `json:"modified"`
	Withdrawn string   `json:"withdrawn"`
	Severity  []struct {
		Type  string `json:"type"`
		Score string `json:"score"`
	} `json:"severity"`
	References []struct {
		URL string `json:"url"`
	} `json:"references"`
	DatabaseSpecific struct {
		Severity string `json:"severity"`
	} `json:"database_specific"`
	Affected []struct {
		Package struct {
			Ecosystem string `json:"ecosystem"`
			Name      string `json:"name"`
		} `json:"package"`
		EcosystemSpecific struct {
			Urgency string `json:"urgency"`
		} `json:"ecosystem_specific"`
		Ranges []struct {
			Type   string  `json:"type"`
			Events []event `json:"events"`
		} `json:"ranges"`
	} `json:"affected"`
}

// span is one affected interval of a range: [introduced, fixed) or [introduced, lastAffected].
type span struct{ introduced, fixed, lastAffected string }

func spans(events []event) []span {
	var out []span
	var cur *span
	for _, e := range events {
		switch {
		case e.Introduced != "":
			if cur != nil {
				out = append(out, *cur)
			}
			cur = &span{introduced: e.Introduced}
		case cur == nil:
			continue
		case e.Fixed != "":
			cur.fixed = e.Fixed
			out = append(out, *cur)
			cur = nil
		case e.LastAffected != "":
			cur.lastAffected = e.LastAffected
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}

// githubRange is a span in GitHub's vulnerableVersionRange syntax, as vunnel writes it.
func (s span) githubRange() string {
	var parts []string
	if s.introduced != "0" {
		parts = append(parts, ">= "+s.introduced)
	}
	switch {
	case s.fixed != "":
		parts = append(parts, "< "+s.fixed)
	case s.lastAffected != "":
		parts = append(parts, "<= "+s.lastAffected)
	}
	if len(parts) == 0 {
		return ">= 0"
	}
	return strings.Join(parts, " ")
}

func (r osvRecord) cves() []string {
	var out []string
	for _, id := range append(append([]string{}, r.Upstream...), r.Aliases...) {
		if strings.HasPrefix(id, "CVE-") && !contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// distro maps an OSV distribution ecosystem to vunnel's namespace and version format.
func distro(ecosystem string) (namespace, format string, ok bool) {
	name, release, found := strings.Cut(ecosystem, ":")
	if !found {
		return "", "", false
	}
	switch name {
	case "Debian":
		return "debian:" + release, "dpkg", true
	case "Ubuntu":
		release, _, _ = strings.Cut(release, ":") // 22.04:LTS
		return "ubuntu:" + release, "dpkg", true
	case "Alpine":
		return "alpine:" + strings.TrimPrefix(release, "v"), "apk", true
	}
	return "", "", false
}

// urgencySeverity is vunnel's debian mapping of an urgency to a severity.
func urgencySeverity(urgency string) string {
	switch strings.TrimSuffix(urgency, "**") {
	case "low":
		return "Low"
	case "medium":
		return "Medium"
	case "high":
		return "High"
	case "unimportant", "end-of-life":
		return "Negligible"
	}
	return "Unknown"
}

var severityOrder = map[string]int{"Unknown": 0, "Negligible": 1, "Low": 2, "Medium": 3, "High": 4, "Critical": 5}

type item struct {
	provider, schema, identifier string
	body                         any
}

// osItems are the vunnel "os" records of a distribution record, one per namespace.
func osItems(r osvRecord) ([]item, error) {
	name := r.ID
	if cves := r.cves(); len(cves) > 0 {
		name = cves[0]
	}
	type fixedIn struct {
		Name            string         `json:"Name"`
		NamespaceName   string         `json:"NamespaceName"`
		VendorAdvisory  map[string]any `json:"VendorAdvisory"`
		Version         string         `json:"Version"`
		VersionFormat   string         `json:"VersionFormat"`
		VulnerableRange string         `json:"VulnerableRange,omitempty"`
	}
	type vuln struct {
		CVSS          []any          `json:"CVSS"`
		Description   string         `json:"Description"`
		FixedIn       []fixedIn      `json:"FixedIn"`
		Link          string         `json:"Link"`
		Metadata      map[string]any `json:"Metadata"`
		Name          string         `json:"Name"`
		NamespaceName string         `json:"NamespaceName"`
		Severity      string         `json:"Severity"`
	}
	byNS := map[string]*vuln{}
	var order []string
	for _, a := range r.Affected {
		ns, format, ok := distro(a.Package.Ecosystem)
		if !ok {
			return nil, fmt.Errorf("%s: ecosystem %q is not a distribution", r.ID, a.Package.Ecosystem)
		}
		v := byNS[ns]
		if v == nil {
			desc := r.Summary
			if desc == "" {
				desc = r.Details
			}
			v = &vuln{CVSS: []any{}, Description: desc, Metadata: map[string]any{}, Name: name, NamespaceName: ns,
				Severity: "Unknown"}
			if strings.HasPrefix(ns, "debian:") {
				v.Link = "https://security-tracker.debian.org/tracker/" + name
			}
			byNS[ns] = v
			order = append(order, ns)
		}
		if s := urgencySeverity(a.EcosystemSpecific.Urgency); severityOrder[s] > severityOrder[v.Severity] {
			v.Severity = s
		}
		for _, rg := range a.Ranges {
			for _, s := range spans(rg.Events) {
				f := fixedIn{Name: a.Package.Name, NamespaceName: ns, VersionFormat: format, Version: "None",
					VendorAdvisory: map[string]any{"AdvisorySummary": []any{}, "NoAdvisory": false}}
				if s.fixed == "0" {
					continue // not affected in this release, as vunnel skips it
				}
				if s.fixed != "" {
					f.Version = s.fixed
				}
				if s.introduced != "0" || s.lastAffected != "" {
					f.VulnerableRange = strings.ReplaceAll(s.githubRange(), " <", ", <")
				}
				v.FixedIn = append(v.FixedIn, f)
			}
		}
	}
	var out []item
	for _, ns := range order {
		v := byNS[ns]
		out = append(out, item{provider: strings.SplitN(ns, ":", 2)[0], schema: osSchema,
			identifier: ns + "/" + strings.ToLower(name), body: map[string]any{"Vulnerability": v}})
	}
	return out, nil
}

// githubEcosystem is vunnel's name of an OSV ecosystem in GitHub's advisories.
func githubEcosystem(osv string) (string, error) {
	switch osv {
	case "npm":
		return "npm", nil
	case "PyPI":
		return "python", nil
	case "crates.io":
		return "rust", nil
	case "Go":
		return "go", nil
	case "Maven":
		return "maven", nil
	case "RubyGems":
		return "rubygems", nil
	case "NuGet":
		return "nuget", nil
	case "Packagist":
		return "composer", nil
	case "Pub":
		return "pub", nil
	case "Hex":
		return "erlang", nil
	}
	return "", fmt.Errorf("no GitHub ecosystem for OSV ecosystem %q", osv)
}

func githubItem(r osvRecord) (item, error) {
	type fixedIn struct {
		Ecosystem  string `json:"ecosystem"`
		Identifier string `json:"identifier"`
		Name       string `json:"name"`
		Namespace  string `json:"namespace"`
		Range      string `json:"range"`
	}
	type cvss struct {
		Vector  string `json:"vector"`
		Version string `json:"version"`
	}
	type ref struct {
		URL string `json:"url"`
	}
	var fixes []fixedIn
	for _, a := range r.Affected {
		eco, err := githubEcosystem(a.Package.Ecosystem)
		if err != nil {
			return item{}, fmt.Errorf("%s: %w", r.ID, err)
		}
		for _, rg := range a.Ranges {
			for _, s := range spans(rg.Events) {
				id := "None"
				if s.fixed != "" {
					id = s.fixed
				}
				fixes = append(fixes, fixedIn{Ecosystem: eco, Identifier: id, Name: a.Package.Name,
					Namespace: "github:" + eco, Range: s.githubRange()})
			}
		}
	}
	var scores []cvss
	for _, s := range r.Severity {
		if version, ok := strings.CutPrefix(s.Score, "CVSS:"); ok {
			version, _, _ = strings.Cut(version, "/")
			scores = append(scores, cvss{Vector: s.Score, Version: version})
		}
	}
	refs := []ref{}
	for _, x := range r.References {
		refs = append(refs, ref{URL: x.URL})
	}
	severity := map[string]string{"LOW": "Low", "MODERATE": "Medium", "HIGH": "High", "CRITICAL": "Critical"}[strings.ToUpper(r.DatabaseSpecific.Severity)]
	cves := r.cves()
	if cves == nil {
		cves = []string{}
	}
	var withdrawn any
	if r.Withdrawn != "" {
		withdrawn = r.Withdrawn
	}
	advisory := map[string]any{
		"Classification":  "GENERAL",
		"Severity":        severity,
		"cvss_severities": scores,
		"FixedIn":         fixes,
		"Summary":         r.Summary,
		"url":             "https://github.com/advisories/" + r.ID,
		"CVE":             cves,
		"Metadata":        map[string]any{"CVE": cves},
		"ghsaId":          r.ID,
		"published":       r.Published,
		"updated":         r.Modified,
		"withdrawn":       withdrawn,
		"references":      refs,
		"namespace":       "github:" + fixes[0].Ecosystem,
	}
	return item{provider: "github", schema: githubSchema, identifier: strings.ToLower(r.ID),
		body: map[string]any{"Advisory": advisory}}, nil
}

// itemsOf returns a record's id, modified date and vunnel items.
func itemsOf(raw []byte) (string, string, []item, error) {
	var r osvRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", "", nil, err
	}
	items, err := itemsOfRecord(r, raw)
	return r.ID, r.Modified, items, err
}

func itemsOfRecord(r osvRecord, raw []byte) ([]item, error) {
	if len(r.Affected) > 0 {
		if _, _, ok := distro(r.Affected[0].Package.Ecosystem); ok {
			return osItems(r)
		}
	}
	if strings.HasPrefix(r.ID, "GHSA-") && len(r.Affected) > 0 {
		it, err := githubItem(r)
		return []item{it}, err
	}
	return []item{{provider: "osv", schema: osvSchema, identifier: strings.ToLower(r.ID), body: json.RawMessage(raw)}}, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func run(in, out string) error {
	names, err := filepath.Glob(filepath.Join(in, "*.json"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	work, err := os.MkdirTemp("", "grype-db-from-osv-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	stamp := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	var providers []string
	for _, n := range names {
		raw, err := os.ReadFile(n)
		if err != nil {
			return err
		}
		id, modified, items, err := itemsOf(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		for i, it := range items {
			if !contains(providers, it.provider) {
				providers = append(providers, it.provider)
			}
			envelope := map[string]any{"schema": it.schema, "identifier": it.identifier, "item": it.body}
			file := filepath.Join(work, it.provider, "results", fmt.Sprintf("%s-%d.json", filepath.Base(n), i))
			if err := writeJSON(file, envelope); err != nil {
				return err
			}
			fmt.Printf("%s -> %s %s\n", id, it.provider, it.schema)
		}
		if t, err := time.Parse(time.RFC3339, modified); err == nil && t.After(stamp) {
			stamp = t
		}
	}
	if len(providers) == 0 {
		return fmt.Errorf("no OSV records in %s", in)
	}

	var states provider.States
	for _, p := range providers {
		ws := provider.NewWorkspace(work, p)
		if err := ws.EnsureListingFile(); err != nil {
			return err
		}
		listing, err := provider.HashFileXXH64(ws.ListingPath())
		if err != nil {
			return err
		}
		state := map[string]any{
			"provider": p, "version": 1, "distribution_version": 1, "processor": "grype-db-from-osv",
			"schema": map[string]string{"version": "1.0.2", "url": stateSchema}, "urls": []string{},
			"timestamp": stamp, "store": "flat-file", "stale": false,
			"listing": map[string]string{"path": "results/listing.xxh64", "digest": listing, "algorithm": "xxh64"},
		}
		if err := writeJSON(ws.StatePath(), state); err != nil {
			return err
		}
		s, err := ws.ReadState()
		if err != nil {
			return err
		}
		states = append(states, *s)
	}

	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return grypedb.Build(grypedb.BuildConfig{
		SchemaVersion: 6,
		Directory:     out,
		States:        states,
		Timestamp:     stamp,
	})
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("grype-db-from-osv (Grype's v6 DB builder)")
		return
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: grype-db-from-osv OSV_DIR OUT_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "grype-db-from-osv:", err)
		os.Exit(1)
	}
}
