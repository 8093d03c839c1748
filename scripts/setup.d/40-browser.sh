# Headless Chromium for the web console's browser tests (tests/console; sourced by scripts/test, which defines
# apt_install). Debian's chromium and chromium-driver: Selenium drives them, and nothing downloads a browser.
# STOKER_TEST_BROWSER=1 makes those tests fail, not skip, when the browser is missing.
apt_install chromium chromium-driver
export STOKER_TEST_BROWSER=1
# Screenshots of every console page, kept as CI artefacts (tests/console/browser.py: screenshot()).
export STOKER_CONSOLE_SCREENSHOTS="${STOKER_CONSOLE_SCREENSHOTS:-$PWD/.ci-artifacts/console}"
