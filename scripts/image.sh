#!/usr/bin/env bash
# Builds the services' OCI images from the Dockerfile without a Docker daemon: buildah (chroot
# isolation, overlay storage) on a Python 3.11 base that mmdebstrap assembles from Debian's bookworm
# packages, since no container registry is reachable from this project's machines.
#
#   scripts/image.sh [service ...]     (default: all five; IMAGE_TAG, default dev)
#
# Images are tagged localhost/greenpartners/<service>:<tag> in buildah's local storage; push
# them with `buildah push`, or load them into kind with `buildah push <image>
# docker-archive:<file>` and `kind load image-archive <file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=(partner-registry locker-hubs fleet-telemetry emissions-ledger stream-gateway)
TAG="${IMAGE_TAG:-dev}"
BASE="localhost/greenpartners/python-base:3.11-bookworm"
# The base's packages: the lock's interpreter (with venv, to build the environment), the C++
# runtime grpcio's wheels link against, CA certificates and time zones.
BASE_PACKAGES="python3.11,python3.11-venv,libstdc++6,ca-certificates,tzdata"
# overlay keeps a layer as its difference; vfs (BUILDAH_STORAGE_DRIVER=vfs) copies it whole.
buildah_() { buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-overlay}" "$@"; }

for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install buildah mmdebstrap" >&2; exit 1; }
done

if ! buildah_ inspect --type image "$BASE" >/dev/null 2>&1; then
  rootfs="$(mktemp -d)/rootfs.tar"
  echo "assembling $BASE from Debian bookworm ($BASE_PACKAGES)"
  mmdebstrap --quiet --variant=essential --include="$BASE_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' bookworm "$rootfs"
  container="$(buildah_ from scratch)"
  buildah_ add --quiet "$container" "$rootfs" /
  buildah_ config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3.11 \
    --label org.opencontainers.image.title=greenpartners-python-base \
    --label "org.opencontainers.image.description=Debian bookworm with Python 3.11, for the platform's images" \
    "$container"
  buildah_ commit --quiet "$container" "$BASE" >/dev/null
  buildah_ rm "$container" >/dev/null
  rm -rf "$(dirname "$rootfs")"
fi

# Behind a TLS-intercepting proxy the build's downloads need this machine's CA bundle; it is a
# build secret, mounted for those steps only.
secret=()
[ -f /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt)
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

for service in "${@:-${SERVICES[@]}}"; do
  [[ " ${SERVICES[*]} " == *" $service "* ]] || { echo "no service named $service" >&2; exit 2; }
  echo "building localhost/greenpartners/$service:$TAG"
  buildah_ bud --quiet --isolation chroot --layers "${secret[@]}" \
    --build-arg PYTHON_IMAGE="$BASE" --build-arg REVISION="$revision" \
    --target "$service" -t "localhost/greenpartners/$service:$TAG" . >/dev/null
done
