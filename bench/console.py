"""The web console's overview with many functions: time to the first paint and to the full table, in Chromium.

    python bench/console.py [--functions 500] [--rounds 5]

Starts ``stoker up`` (local backend, no warm pool) in a temporary home, deploys N copies of the hello function and
scales each to zero (so N replica processes never run at once), logs in to /ui/ in headless Chromium (Debian's
``chromium`` and ``chromium-driver``) and loads the overview ``--rounds`` times, printing for each the browser's
first contentful paint and the moment the table holds every function (measured in the page, from navigation start).
Also prints the size of ``/system/stats``.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stoker import bundle  # noqa: E402
from tests.console.browser import chromium, wait_for  # noqa: E402
from tests.platform_fixture import FUNCTIONS, PASSWORD, start_platform  # noqa: E402

FULL_TABLE = """
const [n, done] = arguments;
function look() {
  if (document.querySelectorAll('#functions tbody tr').length >= n) {
    const fcp = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
    done({table: performance.now(), fcp: fcp ? fcp.startTime : null});
  } else requestAnimationFrame(look);
}
look();
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--functions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stoker-bench-console-") as tmp:
        p = start_platform(Path(tmp) / "home", env={"STOKER_POOL_SIZE": "0"})
        try:
            source = base64.b64encode(bundle.pack(FUNCTIONS / "hello")).decode()
            labels = {"com.openfaas.scale.min": "0", "com.openfaas.scale.zero": "true"}
            with p.client() as c:
                for i in range(args.functions):
                    name = f"fn-{i:04d}"
                    r = c.post("/system/functions", json={"service": name, "source": source, "labels": labels})
                    assert r.status_code == 202, r.text
                    c.post(f"/system/scale-function/{name}", json={"serviceName": name, "replicas": 0})
                size = len(c.get("/system/stats").content)
            driver = chromium()
            try:
                driver.get(p.url + "/ui/login")
                driver.find_element("id", "password").send_keys(PASSWORD)
                driver.find_element("id", "submit").click()
                wait_for(lambda: driver.find_elements("css selector", "#functions tbody tr"), timeout=60)
                driver.set_script_timeout(60)
                tables, paints = [], []
                for _ in range(args.rounds):
                    driver.get(p.url + "/ui/")
                    got = driver.execute_async_script(FULL_TABLE, args.functions)
                    tables.append(got["table"])
                    paints.append(got["fcp"] or float("nan"))
            finally:
                driver.quit()
        finally:
            p.stop()
    print(f"\nconsole overview, {args.functions} functions, {args.rounds} loads (headless Chromium, loopback)\n")
    print(f"/system/stats: {size} bytes")
    print(f"first contentful paint: median {statistics.median(paints):.0f} ms (all: {[round(x) for x in paints]})")
    print(f"table with every function: median {statistics.median(tables):.0f} ms (all: {[round(x) for x in tables]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
