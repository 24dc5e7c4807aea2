"""Every proto file sets each language's package option, consistently across files.

Reads a buf image in JSON (`buf build -o image.json`). A file without an option would leave that
language's generator to guess (protoc-gen-go refuses outright); files of one proto package that
disagree would split the generated code across packages.
"""

import json
import sys

# option -> what its value must look like, derived from the proto package `clerkindex.v1`.
EXPECTED = {
    "goPackage": lambda v: v.endswith("/clerkindex/v1;clerkindexv1"),
    "javaPackage": lambda v: v.endswith("clerkindex.v1"),
    "javaMultipleFiles": lambda v: v is True,
    "javaOuterClassname": lambda v: v.endswith("Proto"),
    "csharpNamespace": lambda v: v == "ClerkIndex.V1",
    "phpNamespace": lambda v: v == "ClerkIndex\\V1",
    "phpMetadataNamespace": lambda v: v.startswith("ClerkIndex\\V1\\"),
    "rubyPackage": lambda v: v == "ClerkIndex::V1",
    "objcClassPrefix": lambda v: len(v) >= 3 and v.isupper(),
    "swiftPrefix": lambda v: v.startswith("ClerkIndexV1"),
}
# Options whose value is per file; every other one must be the same in every file.
PER_FILE = {"javaOuterClassname"}


def main(image_path):
    files = [f for f in json.load(open(image_path))["file"] if f["name"].startswith("clerkindex/")]
    problems = []
    seen = {}
    for file in files:
        options = file.get("options", {})
        for option, fits in EXPECTED.items():
            value = options.get(option)
            if value is None:
                problems.append(f"{file['name']}: no {option}")
            elif not fits(value):
                problems.append(f"{file['name']}: {option} = {value!r} does not fit clerkindex.v1")
            elif option not in PER_FILE and seen.setdefault(option, value) != value:
                problems.append(f"{file['name']}: {option} = {value!r}, another file has {seen[option]!r}")
    outer = [file.get("options", {}).get("javaOuterClassname") for file in files]
    if len(set(outer)) != len(outer):
        problems.append(f"javaOuterClassname repeats across files: {outer}")
    if not files:
        problems.append("no clerkindex/ files in the image")
    for problem in problems:
        print(problem, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main(sys.argv[1])
