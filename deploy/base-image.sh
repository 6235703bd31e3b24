#!/bin/sh
# Build the Debian bookworm base image from debootstrap when no registry serves it.
# Usage: deploy/base-image.sh [image-name]   (default docker.io/library/debian:bookworm-slim)
# Podman global arguments may be passed in PODMAN_ARGS (e.g. "--runtime runc --cgroup-manager cgroupfs").
set -eu
image="${1:-docker.io/library/debian:bookworm-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if podman ${PODMAN_ARGS:-} image exists "$image"; then
    echo "base image $image already present"
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror"
# Drop the apt lists and caches: the image's own Containerfile runs apt-get update.
rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin
tar -C "$work/rootfs" -c . | podman ${PODMAN_ARGS:-} import \
    --change 'CMD ["bash"]' - "$image"
echo "base image $image built"
