# Redis for the Redis Streams queue tests (sourced by scripts/test, which defines apt_install).
# Installs redis-server, starts one on 127.0.0.1:6390 (state under /tmp) unless one answers there already, waits for
# PING, and exports STOKER_TEST_REDIS_URL. Tests that stop Redis start their own server on another port.
apt_install redis-server
STOKER_TEST_REDIS_PORT="${STOKER_TEST_REDIS_PORT:-6390}"
if ! redis-cli -p "$STOKER_TEST_REDIS_PORT" ping >/dev/null 2>&1; then
  mkdir -p /tmp/stoker-test-redis
  redis-server --port "$STOKER_TEST_REDIS_PORT" --bind 127.0.0.1 --dir /tmp/stoker-test-redis \
    --save "" --appendonly yes --databases 1024 --daemonize yes --logfile /tmp/stoker-test-redis/redis.log >/dev/null
  for _ in $(seq 1 100); do
    redis-cli -p "$STOKER_TEST_REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$STOKER_TEST_REDIS_PORT" ping >/dev/null 2>&1 || {
    echo "redis-server did not start; see /tmp/stoker-test-redis/redis.log" >&2; return 1; }
fi
export STOKER_TEST_REDIS_URL="redis://127.0.0.1:$STOKER_TEST_REDIS_PORT/0"
