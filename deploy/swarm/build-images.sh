#!/usr/bin/env bash
# Build the images an install runs, offline (no registry): the runtime image, the platform image and, when asked, a
# Redis image.
#   deploy/swarm/build-images.sh            -> stoker/runtime:0.1.0 (STOKER_RUNTIME_IMAGE names another tag)
#   deploy/swarm/build-images.sh            -> stoker/platform:0.1.0 (STOKER_PLATFORM_IMAGE names another tag)
#   deploy/swarm/build-images.sh --redis    -> also stoker/redis:7.0.15 (the redis-server installed on this host;
#                                              STOKER_REDIS_IMAGE names another tag)
# Used by every install target (docs/install.md).
# Both start from the runtime's root filesystem (stoker/runtime-rootfs:bookworm, made by `stoker base-image` with
# debootstrap when no registry is reachable). Python packages are installed here with pip --target, as the builder
# does for functions, so nothing inside a build needs the network. With a registry, build from
# deploy/platform.Dockerfile and use redis:7-alpine instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOTFS="${STOKER_ROOTFS:-stoker/runtime-rootfs:bookworm}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)"
PLATFORM_IMAGE="${STOKER_PLATFORM_IMAGE:-stoker/platform:$VERSION}"
# The runtime image (what function replicas and the warm pool run), tagged with the pinned name installs use.
RUNTIME_IMAGE="${STOKER_RUNTIME_IMAGE:-stoker/runtime:$VERSION}"
runtime="$(python3 -m stoker base-image --name stoker/runtime | sed -n 's/^base image \([^ ]*\) .*/\1/p' | tail -1)"
[ -n "$runtime" ] || { echo "stoker base-image failed" >&2; exit 1; }
docker tag "$runtime" "$RUNTIME_IMAGE"
echo "$RUNTIME_IMAGE"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The platform: skipped when an image built from the same source exists (content label).
digest="$(find pyproject.toml stoker gateway runtime builder autoscaler events -name '*.py' -o -name pyproject.toml \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
if [ "$(docker image inspect -f '{{index .Config.Labels "com.stoker.source"}}' "$PLATFORM_IMAGE" 2>/dev/null)" != "$digest" ]; then
  # async-timeout: redis-py needs it below Python 3.11.3 (Debian bookworm has 3.11.2); pip here may run a newer one
  python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$work/lib" . async-timeout \
    >"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; exit 1; }
  rm -rf "$work/lib/bin"
  cat >"$work/Dockerfile" <<DOCKERFILE
FROM $ROOTFS
COPY lib/ /opt/stoker/platform/
# The state folder of Compose installs: a new volume mounted here starts owned by the platform's user.
RUN mkdir -p /var/lib/stoker && chown 10001:10001 /var/lib/stoker && chmod 0700 /var/lib/stoker
ENV PYTHONPATH=/opt/stoker/platform PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
LABEL com.stoker.source=$digest
ENTRYPOINT ["python3", "-m", "stoker"]
CMD ["up", "--host", "0.0.0.0"]
DOCKERFILE
  docker build -q -t "$PLATFORM_IMAGE" "$work" >/dev/null 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
fi
echo "$PLATFORM_IMAGE"

if [ "${1:-}" = "--redis" ]; then
  REDIS_IMAGE="${STOKER_REDIS_IMAGE:-stoker/redis:7.0.15}"
  if ! docker image inspect "$REDIS_IMAGE" >/dev/null 2>&1; then
    server="$(command -v redis-server)"
    mkdir -p "$work/redis/usr/local/bin"
    cp "$server" "$work/redis/usr/local/bin/redis-server"
    # The libraries it links (same Debian release as the root filesystem), at the same paths.
    ldd "$server" | awk '/=> \//{print $3}' | while read -r lib; do
      dest="/usr${lib#/usr}"  # /lib is a symlink to usr/lib in the image: COPY must not replace it
      mkdir -p "$work/redis$(dirname "$dest")"; cp -L "$lib" "$work/redis$dest"; done
    printf 'FROM %s\nCOPY redis/ /\nRUN mkdir -p /data && chown 10001:10001 /data\nUSER 10001:10001\nWORKDIR /data\nEXPOSE 6379\nCMD ["redis-server"]\n' "$ROOTFS" \
      >"$work/Dockerfile"
    docker build -q -t "$REDIS_IMAGE" "$work" >/dev/null 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
  fi
  echo "$REDIS_IMAGE"
fi
