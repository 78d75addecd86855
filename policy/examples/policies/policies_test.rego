package berth.policies_test

# Rules are referenced by their full path: regorus 0.14.1 evaluates a rule that several modules
# define from one module only when it is reached through an import (docs/trust-and-policy.md).

signed := {"role": "job", "name": "registry.example.com/tools/builder:1.4", "tag": "1.4", "digest": null, "signature": "verified"}

test_a_signed_pinned_company_image_is_admitted if {
	count(data.berth.prepare.deny) == 0 with input as {"ref": {"name": "main", "protected": true}, "images": [signed]}
}

test_an_image_from_elsewhere_is_denied if {
	some msg in data.berth.prepare.deny with input as {"ref": {"name": "main", "protected": false}, "images": [{"role": "service", "name": "docker.io/library/redis:7", "tag": "7", "digest": null, "signature": "unchecked"}]}
	contains(msg, "not from the company registry")
}

test_an_unsigned_company_image_is_denied if {
	count(data.berth.prepare.deny) == 1 with input as {"ref": {"name": "dev", "protected": false}, "images": [object.union(signed, {"signature": "unchecked"})]}
}

test_latest_is_denied_on_protected_refs_only if {
	latest := object.union(signed, {"name": "registry.example.com/tools/builder:latest", "tag": "latest"})
	count(data.berth.prepare.deny) == 1 with input as {"ref": {"name": "main", "protected": true}, "images": [latest]}
	count(data.berth.prepare.deny) == 0 with input as {"ref": {"name": "dev", "protected": false}, "images": [latest]}
}

critical := {"Results": [{"Vulnerabilities": [{"VulnerabilityID": "CVE-2024-0001", "PkgName": "openssl", "InstalledVersion": "3.0.1", "Severity": "CRITICAL"}]}]}

test_a_critical_finding_without_vex_is_denied if {
	count(data.berth.build.deny) == 1 with input as {"image": {"names": ["app:1"]}, "report": critical, "vex": []}
}

test_a_critical_finding_with_vex_is_admitted if {
	count(data.berth.build.deny) == 0 with input as {"image": {"names": ["app:1"]}, "report": critical, "vex": [{"vulnerability": "CVE-2024-0001", "status": "not_affected", "source": ".vex/x.json"}]}
}
