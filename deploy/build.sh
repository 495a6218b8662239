#!/usr/bin/env sh
# The build step of deploy/Dockerfile, runnable outside Docker so CI checks
# the very commands the image runs (`.ci/run`: PROFILE=dev deploy/build.sh).
#   FEATURES=cuda   build with CUDA (needs the CUDA toolkit; CUDA_COMPUTE_CAP, e.g. 90)
#   PROFILE=release (default) or dev
#   OUT=DIR         where to copy the binary (default: /usr/local/bin, or nothing with OUT=)
set -eu
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
features="${FEATURES:-}"
set -- build --locked --profile "$profile" --bin c3
[ -n "$features" ] && set -- "$@" --features "$features"
echo "deploy/build.sh: cargo $*" >&2
cargo "$@"
dir=target/$([ "$profile" = dev ] && echo debug || echo "$profile")
"$dir/c3" --version
"$dir/c3" merge --help >/dev/null
"$dir/c3" ingest --help | grep -q -- '--shard'
if [ -n "${OUT-/usr/local/bin}" ]; then
  install -m 0755 "$dir/c3" "${OUT-/usr/local/bin}/c3"
fi
