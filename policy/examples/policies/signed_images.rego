# Only signed images from the company registry: every image a job runs (its image and its
# services) must come from one of data.company.registries, and its signature must have been
# verified under berth's image trust policy.
package berth.prepare

import data.company

from_company_registry(name) if {
	some prefix in company.registries
	startswith(name, prefix)
}

deny contains msg if {
	some image in input.images
	not from_company_registry(image.name)
	msg := sprintf("%s %s is not from the company registry (%s)", [image.role, image.name, concat(", ", company.registries)])
}

deny contains msg if {
	some image in input.images
	from_company_registry(image.name)
	image.signature != "verified"
	msg := sprintf("%s %s is not signed with a key the company trusts (signature: %s)", [image.role, image.name, image.signature])
}
