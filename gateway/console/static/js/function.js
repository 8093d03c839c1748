import { html, useEffect, useRef, useState } from "../vendor/htm-preact.module.js";
import { api, ago, fmt, ms, q } from "./api.js";
import { Chart } from "./charts.js";
import { usePoll } from "./poll.js";

function Pairs({ obj }) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return html`<span class="muted">none</span>`;
  return html`<ul class="pairs">${entries.map(([k, v]) => html`<li><code>${k}</code>: <code>${String(v)}</code></li>`)}</ul>`;
}

function Config({ fn }) {
  if (!fn) return null;
  const res = (r) => (r && (r.memory || r.cpu) ? `memory ${r.memory || "–"}, cpu ${r.cpu || "–"}` : "none");
  return html`<section class="panel" id="config">
    <h2>Configuration</h2>
    <dl>
      <dt>Image</dt><dd><code>${fn.image}</code></dd>
      <dt>Created</dt><dd>${fn.createdAt}</dd>
      <dt>Replicas</dt><dd>${fn.availableReplicas} ready of ${fn.replicas}</dd>
      <dt>Labels</dt><dd><${Pairs} obj=${fn.labels} /></dd>
      <dt>Annotations</dt><dd><${Pairs} obj=${fn.annotations} /></dd>
      <dt>Environment</dt><dd><${Pairs} obj=${fn.envVars} /></dd>
      <dt>Secrets</dt><dd>${(fn.secrets || []).length ? fn.secrets.map((s) => html`<code>${s}</code> `) : html`<span class="muted">none</span>`}</dd>
      <dt>Limits</dt><dd>${res(fn.limits)}</dd>
      <dt>Requests</dt><dd>${res(fn.requests)}</dd>
      ${fn.message && html`<dt>Problem</dt><dd class="bad">${fn.message}</dd>`}
    </dl>
  </section>`;
}

function Charts({ s }) {
  if (!s) return null;
  const t = s.series.t;
  const markers = s.events.map((e) => ({ time: e.time }));
  return html`<section class="panel" id="charts">
    <h2>Last 15 minutes <span class="muted">(a point every ${s.stepSeconds} s)</span></h2>
    <div class="charts">
      <${Chart} title="Calls and errors per second" times=${t}
        series=${[{ label: "calls/s", values: s.series.rate, color: "#2563eb" }, { label: "errors/s", values: s.series.errors, color: "#dc2626" }]} />
      <${Chart} title="Latency" unit="s" times=${t}
        series=${[{ label: "p50", values: s.series.p50, color: "#059669" }, { label: "p99", values: s.series.p99, color: "#db2777" }]} />
      <${Chart} title="Replicas (markers: scaling decisions)" times=${t} markers=${markers}
        series=${[{ label: "ready", values: s.series.replicas, color: "#2563eb" }, { label: "desired", values: s.series.desired, color: "#f59e0b" }, { label: "in flight", values: s.series.inflight, color: "#6b7280" }, { label: "queue lag", values: s.series.lag, color: "#7c3aed" }]} />
    </div>
    <h3>Scaling decisions</h3>
    ${s.events.length
      ? html`<table class="events"><thead><tr><th>When</th><th>Replicas</th><th>By</th><th>Reason</th></tr></thead><tbody>
        ${s.events.slice().reverse().map((e) => html`<tr><td>${ago(e.time)}</td><td class="num">${e.from} → ${e.to}</td><td>${e.source}</td><td>${e.reason}</td></tr>`)}
      </tbody></table>`
      : html`<p class="muted">None since this gateway started.</p>`}
  </section>`;
}

function Logs({ name, namespace }) {
  const [lines, setLines] = useState([]);
  const [filter, setFilter] = useState("");
  const [follow, setFollow] = useState(true);
  const [state, setState] = useState("connecting");
  const box = useRef(null);
  useEffect(() => {
    const src = new EventSource(`/system/logs?name=${q(name)}&namespace=${q(namespace)}&tail=200&follow=true`);
    const pending = [];
    let timer = null;
    src.onopen = () => setState("live");
    src.onerror = () => setState("reconnecting");
    src.onmessage = (ev) => {
      pending.push(JSON.parse(ev.data));
      if (!timer)
        timer = setTimeout(() => {
          timer = null;
          const add = pending.splice(0);
          setLines((old) => old.concat(add).slice(-2000));
        }, 100);
    };
    return () => {
      src.close();
      clearTimeout(timer);
    };
  }, [name, namespace]);
  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  });
  const needle = filter.trim();
  const shown = needle ? lines.filter((l) => l.text.includes(needle)) : lines;
  return html`<section class="panel" id="logs">
    <h2>Live log <span class="muted">(${state})</span></h2>
    <div class="bar">
      <input type="search" id="log-filter" placeholder="Filter by call id or text" aria-label="Filter the log"
        value=${filter} onInput=${(e) => setFilter(e.target.value)} />
      <label><input type="checkbox" id="log-follow" checked=${follow} onChange=${(e) => setFollow(e.target.checked)} /> Follow</label>
      <button onClick=${() => setLines([])}>Clear</button>
    </div>
    <div class="log" id="log" ref=${box} tabindex="0" role="log" aria-label="Live log">${shown.map(
      (l) => html`<div class="line"><span class="muted">${l.timestamp.slice(11, 23)} ${l.instance}</span> ${l.text}</div>`,
    )}</div>
  </section>`;
}

function hexdump(bytes) {
  const rows = [];
  for (let i = 0; i < bytes.length && i < 4096; i += 16) {
    const chunk = Array.from(bytes.slice(i, i + 16));
    const hex = chunk.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const text = chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    rows.push(`${i.toString(16).padStart(6, "0")}  ${hex.padEnd(48)}  ${text}`);
  }
  if (bytes.length > 4096) rows.push(`… ${bytes.length - 4096} more bytes`);
  return rows.join("\n");
}

function Invoke({ name, namespace }) {
  const [method, setMethod] = useState("POST");
  const [path, setPath] = useState("/");
  const [query, setQuery] = useState("");
  const [headers, setHeaders] = useState("Content-Type: text/plain");
  const [body, setBody] = useState("");
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    setBusy(true);
    const h = new Headers();
    try {
      for (const line of headers.split("\n")) {
        const i = line.indexOf(":");
        if (line.trim() && i > 0) h.append(line.slice(0, i).trim(), line.slice(i + 1).trim());
      }
      const sub = path.startsWith("/") ? path : "/" + path;
      const url = `/function/${q(name)}.${q(namespace)}${sub === "/" ? "" : sub}${query ? "?" + query.replace(/^\?/, "") : ""}`;
      const started = performance.now();
      // credentials: "omit": a function never gets the operator's cookies
      const r = await fetch(url, { method, headers: h, body: method === "GET" || method === "HEAD" ? undefined : body, credentials: "omit" });
      const bytes = new Uint8Array(await r.arrayBuffer());
      const took = (performance.now() - started) / 1000;
      let text = null;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch (e) {
        text = null;
      }
      setResult({ status: r.status, statusText: r.statusText, headers: [...r.headers.entries()], took, text, hex: text === null ? hexdump(bytes) : "" });
    } catch (e) {
      setResult({ error: e.message || String(e) });
    }
    setBusy(false);
  };
  return html`<section class="panel" id="invoke">
    <h2>Invoke</h2>
    <form onSubmit=${submit} class="invoke">
      <label>Method <select id="invoke-method" value=${method} onChange=${(e) => setMethod(e.target.value)}>
        ${["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].map((m) => html`<option value=${m}>${m}</option>`)}
      </select></label>
      <label>Path <input id="invoke-path" value=${path} onInput=${(e) => setPath(e.target.value)} /></label>
      <label>Query <input id="invoke-query" value=${query} placeholder="a=1&b=2" onInput=${(e) => setQuery(e.target.value)} /></label>
      <label class="wide">Headers (one per line) <textarea id="invoke-headers" rows="3" value=${headers} onInput=${(e) => setHeaders(e.target.value)}></textarea></label>
      <label class="wide">Body <textarea id="invoke-body" rows="5" value=${body} onInput=${(e) => setBody(e.target.value)}></textarea></label>
      <button type="submit" id="invoke-send" disabled=${busy}>${busy ? "Calling…" : "Invoke"}</button>
    </form>
    ${result && result.error && html`<p class="error" role="alert">${result.error}</p>`}
    ${result && !result.error &&
    html`<div class="result" id="invoke-result">
      <p><strong class=${result.status >= 400 ? "bad" : "good"} id="invoke-status">${result.status} ${result.statusText}</strong>
        <span class="muted"> in ${ms(result.took)}</span></p>
      <details><summary>${result.headers.length} headers</summary>
        <ul class="pairs">${result.headers.map(([k, v]) => html`<li><code>${k}</code>: <code>${v}</code></li>`)}</ul></details>
      <pre class="body" id="invoke-body-out">${result.text !== null ? result.text : result.hex}</pre>
    </div>`}
  </section>`;
}

function History({ name, namespace, reloads }) {
  const [h, error] = usePoll(() => api(`/system/function/${q(name)}/history?namespace=${q(namespace)}`), 5000, [name, namespace, reloads]);
  return html`<section class="panel" id="history">
    <h2>Deploy history <span class="muted">(last 50 changes through the API)</span></h2>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${h && h.entries.length
      ? html`<table class="events"><thead><tr><th>When</th><th>Change</th><th>By</th><th>Result</th><th>What changed</th></tr></thead><tbody>
        ${h.entries.map((e) => html`<tr data-action=${e.action}>
          <td title=${e.time}>${ago(e.timestamp)}</td>
          <td>${e.action}</td>
          <td>${e.user}${e.via && html`<span class="muted"> (${e.via})</span>`}</td>
          <td class=${e.result === "ok" ? "good" : "bad"}>${e.result === "ok" ? "ok" : `failed (${e.status})`}${e.error && html`<div class="muted">${e.error}</div>`}</td>
          <td>${e.changes.length ? html`<ul class="pairs">${e.changes.map((c) => html`<li><code>${c}</code></li>`)}</ul>` : html`<span class="muted">–</span>`}</td>
        </tr>`)}
      </tbody></table>`
      : h && html`<p class="muted">No changes recorded.</p>`}
  </section>`;
}

function Actions({ fn, onChanged }) {
  const [replicas, setReplicas] = useState("");
  const [confirm, setConfirm] = useState(null);
  const [message, setMessage] = useState("");
  if (!fn) return null;
  const scale = async () => {
    setConfirm(null);
    try {
      await api(`/system/scale-function/${q(fn.name)}`, { method: "POST", body: { serviceName: fn.name, namespace: fn.namespace, replicas: Number(replicas) } });
      setMessage(`Scaling ${fn.name} to ${replicas}.`);
      onChanged();
    } catch (e) {
      setMessage(e.message);
    }
  };
  const remove = async () => {
    setConfirm(null);
    try {
      await api("/system/functions", { method: "DELETE", body: { functionName: fn.name, namespace: fn.namespace } });
      location.hash = "#/";
    } catch (e) {
      setMessage(e.message);
    }
  };
  return html`<section class="panel" id="actions">
    <h2>Operate</h2>
    <div class="bar">
      <label>Replicas <input id="scale-replicas" type="number" min="0" value=${replicas} placeholder=${String(fn.replicas)} onInput=${(e) => setReplicas(e.target.value)} /></label>
      <button id="scale" disabled=${replicas === ""} onClick=${() => setConfirm("scale")}>Scale…</button>
      <button id="remove" class="danger" onClick=${() => setConfirm("remove")}>Remove…</button>
    </div>
    ${confirm === "scale" && html`<div class="confirm" role="alertdialog" aria-label="Confirm scaling">
      Scale <strong>${fn.name}</strong> to ${replicas} replicas?
      <button id="confirm" onClick=${scale}>Scale</button> <button onClick=${() => setConfirm(null)}>Cancel</button></div>`}
    ${confirm === "remove" && html`<div class="confirm" role="alertdialog" aria-label="Confirm removal">
      Remove <strong>${fn.name}</strong> from ${fn.namespace}? Its replicas stop and calls to it answer 404.
      <button id="confirm" class="danger" onClick=${remove}>Remove</button> <button onClick=${() => setConfirm(null)}>Cancel</button></div>`}
    ${message && html`<p role="status">${message}</p>`}
  </section>`;
}

export function FunctionPage({ name, namespace }) {
  const [fn, fnError, reloadFn] = usePoll(() => api(`/system/function/${q(name)}?namespace=${q(namespace)}`), 5000, [name, namespace]);
  const [changed, setChanged] = useState(0);
  const reload = () => {
    reloadFn();
    setChanged((n) => n + 1);
  };
  const [stats, statsError] = usePoll(() => api(`/system/stats/${q(name)}?namespace=${q(namespace)}`), 2000, [name, namespace]);
  const error = fnError || statsError;
  return html`<section>
    <div class="bar"><h1>${name}<span class="muted">.${namespace}</span></h1>
      ${stats && html`<span class="muted">${stats.invocations} calls · ${fmt(stats.rate)} /s · p99 ${ms(stats.p99)} · ${stats.coldStarts} cold starts</span>`}</div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <div class="grid">
      <${Invoke} name=${name} namespace=${namespace} />
      <${Config} fn=${fn} />
    </div>
    <${Logs} name=${name} namespace=${namespace} />
    <${Charts} s=${stats} />
    <${Actions} fn=${fn} onChanged=${reload} />
    <${History} name=${name} namespace=${namespace} reloads=${changed} />
  </section>`;
}
