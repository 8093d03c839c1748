# Docker Swarm for the swarm backend tests (sourced by scripts/test after 20-docker.sh started the engine).
# Makes the local engine a single-node swarm manager unless it is in a swarm already, and records whether it did:
# STOKER_TEST_SWARM_CREATED=1 makes the tests leave the swarm again when they finish (tests/runtime/
# backends/swarm/test_support.py); a swarm that existed before is left alone. No registry is needed: images stay local.
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" != "active" ]; then
  _swarm_addr="$(hostname -I 2>/dev/null | awk '{print $1}')"
  docker swarm init ${_swarm_addr:+--advertise-addr "$_swarm_addr"} >/dev/null
  export STOKER_TEST_SWARM_CREATED=1
fi
export STOKER_TEST_SWARM=1
