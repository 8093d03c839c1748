import { html, useState } from "../vendor/htm-preact.module.js";
import { api, ago, q } from "./api.js";
import { usePoll } from "./poll.js";

function DeadLetters({ fn, onChanged }) {
  const [letters, error, reload] = usePoll(() => api(`/system/queue/${q(fn)}/dead`), 0, [fn]);
  const [message, setMessage] = useState("");
  const [confirmAll, setConfirmAll] = useState(false);
  const replay = async (ids) => {
    setConfirmAll(false);
    try {
      const r = await api(`/system/queue/${q(fn)}/replay`, { method: "POST", body: ids ? { ids } : {} });
      setMessage(`Replayed ${r.replayed} call${r.replayed === 1 ? "" : "s"}.`);
    } catch (e) {
      setMessage(e.message);
    }
    reload();
    onChanged();
  };
  return html`<section class="panel" id="dead">
    <h2>Dead letters of ${fn}</h2>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${message && html`<p role="status" id="replay-message">${message}</p>`}
    ${letters && !letters.length && html`<p class="muted">None.</p>`}
    ${letters && letters.length > 0 &&
    html`<div class="bar"><button id="replay-all" onClick=${() => setConfirmAll(true)}>Replay all ${letters.length}…</button>
      ${confirmAll && html`<span class="confirm" role="alertdialog">Replay every dead letter of ${fn}?
        <button id="confirm" onClick=${() => replay(null)}>Replay all</button> <button onClick=${() => setConfirmAll(false)}>Cancel</button></span>`}</div>
    <div class="scroll"><table class="dead"><thead><tr><th>Dead since</th><th>Attempts</th><th>Last error</th><th>Call</th><th></th></tr></thead><tbody>
      ${letters.map((d) => html`<tr key=${d.deadId} data-dead=${d.deadId}>
        <td>${d.at ? ago(Number(d.at)) : "–"}</td><td class="num">${d.attempts}</td><td class="bad">${d.error}</td>
        <td><code>${d.id}</code></td>
        <td><button class="replay" onClick=${() => replay([d.deadId])}>Replay</button></td></tr>`)}
    </tbody></table></div>`}
  </section>`;
}

function Lookup() {
  const [id, setId] = useState("");
  const [result, setResult] = useState(null);
  const look = async (ev) => {
    ev.preventDefault();
    const r = await fetch(`/system/async-result/${q(id.trim())}`, { headers: { "X-CSRF-Token": "" }, credentials: "same-origin" });
    const text = await r.text();
    setResult({ status: r.status, fn: r.headers.get("X-Function-Status"), took: r.headers.get("X-Duration-Seconds"), text });
  };
  return html`<section class="panel" id="lookup">
    <h2>Async call</h2>
    <form class="bar" onSubmit=${look}>
      <input id="call-id" placeholder="Call id (X-Call-Id of the 202)" aria-label="Call id" value=${id} onInput=${(e) => setId(e.target.value)} required />
      <button type="submit" id="lookup-send">Look up</button>
    </form>
    ${result && html`<div id="lookup-result">
      <p>${result.status === 200 ? html`<strong>done</strong>: the function answered <strong id="lookup-status">${result.fn}</strong>${result.took ? ` in ${result.took} s` : ""}`
        : result.status === 202 ? html`<strong id="lookup-status">pending</strong>: not run yet, or being retried`
        : html`<strong id="lookup-status">${result.status}</strong>`}</p>
      <pre class="body">${result.text}</pre></div>`}
  </section>`;
}

export function Queues() {
  const [rows, error, reload] = usePoll(() => api("/system/queues"), 3000);
  const [open, setOpen] = useState("");
  return html`<section>
    <div class="bar"><h1>Queues</h1></div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${rows && html`<div class="scroll"><table class="queues" id="queues">
      <thead><tr><th>Function</th><th>Stream</th><th>Length</th><th>Lag</th><th>Pending</th><th>Dead letters</th></tr></thead>
      <tbody>${rows.map((r) => html`<tr key=${r.function + r.stream} data-function=${r.function}>
        <td><a href=${"#/function/" + r.function}>${r.function}</a></td><td><code>${r.stream}</code></td>
        <td class="num">${r.length}</td><td class="num">${r.lag}</td><td class="num">${r.pending}</td>
        <td class="num">${r.dead > 0 ? html`<button class="show-dead bad" onClick=${() => setOpen(r.function)}>${r.dead}</button>` : "0"}</td></tr>`)}
      </tbody></table></div>`}
    ${open && html`<${DeadLetters} key=${open} fn=${open} onChanged=${reload} />`}
    <${Lookup} />
  </section>`;
}
