#!/usr/bin/env bash
# The release wheels: one wheel per CPython (3.10 to 3.13) for manylinux_2_28 x86-64, each with
# the TensorRT adapters of both majors. NVIDIA's TensorRT OSS headers (Apache-2.0) of a 10.x
# and an 11.x tag are fetched into .trt/ (ignored by git, never committed) and handed to the
# build as TensorRT10_ROOT and TensorRT11_ROOT; cibuildwheel builds in the manylinux_2_28
# container, repairs each wheel with auditwheel (which finds nothing to graft: the CUDA runtime
# is linked statically and TensorRT is opened at run time) and runs tests/test_wheel.py against
# it installed. Settings: [tool.cibuildwheel] in pyproject.toml. Needs git and docker (or
# podman); the wheels are built from the committed tree (git archive HEAD) and land in
# wheelhouse/.
#
#   bash .ci/release.sh                   # tags v10.16 and v11.1
#   TRTFAST_TENSORRT_TAGS="v10.16 v11.1" bash .ci/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a tags <<< "${TRTFAST_TENSORRT_TAGS:-v10.16 v11.1}"
source_tree=build/release/source
rm -rf "$source_tree"
mkdir -p "$source_tree"
git archive HEAD | tar -x -C "$source_tree"
environment=""
for tag in "${tags[@]}"; do
  folder=".trt/$tag"
  if [ ! -e "$folder/include/NvInferRuntime.h" ]; then
    rm -rf "$folder"
    # The headers alone: a shallow clone that checks out include/ only.
    git clone --quiet --depth 1 --branch "$tag" --filter=blob:none --sparse \
      https://github.com/NVIDIA/TensorRT "$folder"
    git -C "$folder" sparse-checkout set include
  fi
  major=$(sed -n 's/^#define TRT_MAJOR_ENTERPRISE \([0-9]*\).*/\1/p' "$folder/include/NvInferVersion.h")
  echo "release: TensorRT $major headers of tag $tag in $folder/include"
  mkdir -p "$source_tree/$folder"
  cp -r "$folder/include" "$source_tree/$folder/"
  # cibuildwheel copies the project into its container at /project.
  environment+=" TensorRT${major}_ROOT=/project/$folder"
done

python3 -m pip install --quiet "cibuildwheel>=3,<4"
# Each wheel's tests/test_wheel.py run checks that every one of these majors has an adapter.
majors=$(printf '%s\n' "$environment" | grep -o 'TensorRT[0-9]*_ROOT' | tr -dc '0-9\n' | xargs)
CIBW_ENVIRONMENT_LINUX="${environment# } TRTFAST_EXPECT_TENSORRT_MAJORS=\"$majors\"" \
  python3 -m cibuildwheel --platform linux --output-dir wheelhouse "$source_tree"
ls -l wheelhouse
