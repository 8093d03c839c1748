import { html, useMemo, useState } from "../vendor/htm-preact.module.js";
import { api, fmt, ms } from "./api.js";
import { Spark } from "./charts.js";
import { usePoll } from "./poll.js";

function status(f) {
  if (f.message) return ["problem", f.message];
  if (f.replicas === 0) return ["idle", "scaled to zero"];
  if (f.availableReplicas < f.replicas) return ["starting", "starting"];
  return ["ready", "ready"];
}

function errorPercent(f) {
  if (!f.rate) return null;
  return (100 * (f.errorsPerSecond || 0)) / f.rate;
}

const COLUMNS = [
  ["name", "Function", (f) => f.name],
  ["namespace", "Namespace", (f) => f.namespace],
  ["status", "Status", (f) => status(f)[1]],
  ["replicas", "Replicas", (f) => f.availableReplicas * 1000 + f.desiredReplicas],
  ["rate", "Calls/s", (f) => f.rate || 0],
  ["errors", "Errors", (f) => errorPercent(f) || 0],
  ["p50", "p50", (f) => f.p50 ?? -1],
  ["p99", "p99", (f) => f.p99 ?? -1],
  ["coldStarts", "Cold starts", (f) => f.coldStarts],
  ["lag", "Queue lag", (f) => f.lag],
  ["invocations", "Calls", (f) => f.invocations],
];

export function Overview() {
  const [data, error] = usePoll(() => api("/system/stats"), 2000);
  const [filter, setFilter] = useState("");
  const [sort, setSort] = useState(["name", 1]);
  const rows = useMemo(() => {
    if (!data) return [];
    const needle = filter.trim().toLowerCase();
    const key = COLUMNS.find((c) => c[0] === sort[0])[2];
    const out = data.functions.filter(
      (f) => !needle || `${f.name}.${f.namespace} ${f.image}`.toLowerCase().includes(needle),
    );
    out.sort((a, b) => {
      const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sort[1];
    });
    return out;
  }, [data, filter, sort]);
  const header = (c) => {
    const on = sort[0] === c[0];
    const dir = on ? (sort[1] > 0 ? "ascending" : "descending") : "none";
    return html`<th aria-sort=${dir}>
      <button class="sort" onClick=${() => setSort([c[0], on ? -sort[1] : 1])}>${c[1]}${on ? (sort[1] > 0 ? " ▲" : " ▼") : ""}</button>
    </th>`;
  };
  return html`<section>
    <div class="bar">
      <h1>Functions</h1>
      <input type="search" id="filter" placeholder="Filter by name, namespace or image" aria-label="Filter functions"
        value=${filter} onInput=${(e) => setFilter(e.target.value)} />
      <span class="muted">${data ? `${rows.length} of ${data.functions.length}` : ""}</span>
    </div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${!data && !error && html`<p class="loading">Loading…</p>`}
    ${data &&
    html`<div class="scroll"><table class="functions" id="functions">
      <thead><tr>${COLUMNS.map(header)}<th>Calls/s, 15 min</th><th>p99, 15 min</th></tr></thead>
      <tbody>
        ${rows.map((f) => {
          const [kind, text] = status(f);
          const q = `${f.name}.${f.namespace}`;
          const err = errorPercent(f);
          return html`<tr key=${q} data-function=${q}>
            <td><a href=${"#/function/" + q}>${f.name}</a></td>
            <td>${f.namespace}</td>
            <td><span class=${"badge " + kind} title=${text}>${kind}</span></td>
            <td class="num">${f.availableReplicas}/${f.desiredReplicas}</td>
            <td class="num rate">${fmt(f.rate)}</td>
            <td class=${"num" + (err ? " bad" : "")}>${err === null ? "–" : fmt(err, 1) + "%"}</td>
            <td class="num">${ms(f.p50)}</td>
            <td class="num">${ms(f.p99)}</td>
            <td class="num">${f.coldStarts}</td>
            <td class="num">${f.lag}</td>
            <td class="num calls">${f.invocations}</td>
            <td><${Spark} values=${f.series && f.series.rate} label=${"calls per second of " + q} /></td>
            <td><${Spark} values=${f.series && f.series.p99} color="#db2777" label=${"p99 latency of " + q} /></td>
          </tr>`;
        })}
      </tbody>
    </table></div>`}
  </section>`;
}
