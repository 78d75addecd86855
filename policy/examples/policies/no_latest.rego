# No `latest` (or missing) tags on protected refs: a protected branch or tag must say which
# image it runs, by a tag other than latest or by digest.
package berth.prepare

floating(image) if image.tag == "latest"

floating(image) if {
	image.tag == null
	image.digest == null
}

deny contains msg if {
	input.ref.protected
	some image in input.images
	floating(image)
	msg := sprintf("%s %s floats (latest or no tag) on protected ref %s: pin a version or a digest", [image.role, image.name, input.ref.name])
}
