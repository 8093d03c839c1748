# The prometheus-operator CRD schema (as @kubernetes-models/prometheus-operator, generated from the operator's CRDs)
# for tests/install's ServiceMonitor check, run with Node. Installed once into build/crd-models from the npm registry;
# sourced by scripts/test, which defines apt_install. STOKER_TEST_CRD_MODELS makes that test fail, not skip, when
# the models are missing.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
if [ ! -d build/crd-models/node_modules/@kubernetes-models/prometheus-operator ]; then
  mkdir -p build/crd-models
  npm install --silent --no-audit --no-fund --no-save --prefix build/crd-models \
    @kubernetes-models/prometheus-operator@6.0.0 >/dev/null
fi
export STOKER_TEST_CRD_MODELS="$PWD/build/crd-models"
