# Docker Engine for the docker backend and the builder (sourced by scripts/test, which defines apt_install).
# Installs docker.io, debootstrap and docker-compose (Debian's 1.29, for the Compose install tests), starts dockerd in the background unless one answers already, waits for it,
# then builds the runtime base image offline unless the image with the current tag exists (`stoker base-image`
# skips when it does, so this costs about a second after the first run).
apt_install docker.io debootstrap docker-compose
if ! docker info >/dev/null 2>&1; then
  mkdir -p /var/log
  nohup dockerd >/var/log/stoker-dockerd.log 2>&1 &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/stoker-dockerd.log" >&2; return 1; }
fi
python -m stoker base-image
export STOKER_TEST_DOCKER=1
