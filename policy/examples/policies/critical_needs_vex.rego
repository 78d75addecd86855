# No CRITICAL finding without a VEX statement: every vulnerability of a severity listed in
# data.company.vex_required_for that the scan found in a built image must have a VEX statement
# (any status) applied to it.
package berth.build

import data.company

stated contains v.vulnerability if some v in input.vex

deny contains msg if {
	some result in input.report.Results
	some finding in result.Vulnerabilities
	finding.Severity in company.vex_required_for
	not finding.VulnerabilityID in stated
	msg := sprintf("%s in %s %s is %s and has no VEX statement (image %s)", [finding.VulnerabilityID, finding.PkgName, finding.InstalledVersion, finding.Severity, concat(", ", input.image.names)])
}
