// Validates prometheus-operator objects (a JSON array on stdin) with the schema of @kubernetes-models/prometheus-
// operator, which is generated from the operator's CRDs (types, enums, patterns, required fields), and refuses any
// field of the ServiceMonitor's spec, endpoints or namespaceSelector that the CRD does not declare (the generated
// validators let unknown fields through, as the API server would by pruning them silently).
// Usage: node crd_check.mjs MODELS_DIR < objects.json; prints one line per object, "ok" or the problems; exit 1 on any.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = join(process.argv[2], "node_modules");
const v1 = join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");
const { ServiceMonitor } = await import(pathToFileURL(join(v1, "ServiceMonitor.js")).href);

function declared(type) {
  const text = readFileSync(join(v1, `${type}.d.ts`), "utf8");
  return new Set([...text.matchAll(/^\s*"([A-Za-z0-9_]+)"\??:/gm)].map((m) => m[1]));
}

function unknown(where, value, type) {
  const known = declared(type);
  return Object.keys(value ?? {}).filter((k) => !known.has(k)).map((k) => `${where}.${k} is not a field of ${type}`);
}

const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = false;
for (const obj of objects) {
  const problems = [];
  try {
    new ServiceMonitor(obj).validate();
  } catch (e) {
    problems.push(e.message);
  }
  const spec = obj.spec ?? {};
  problems.push(...unknown("spec", spec, "ServiceMonitorSpec"));
  problems.push(...unknown("spec.namespaceSelector", spec.namespaceSelector, "NamespaceSelector"));
  (spec.endpoints ?? []).forEach((e, i) => problems.push(...unknown(`spec.endpoints[${i}]`, e, "Endpoint")));
  failed ||= problems.length > 0;
  console.log(problems.length ? problems.join("; ") : "ok");
}
process.exit(failed ? 1 : 0);
