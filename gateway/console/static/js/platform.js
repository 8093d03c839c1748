import { html } from "../vendor/htm-preact.module.js";
import { api, ago } from "./api.js";
import { usePoll } from "./poll.js";

export function Platform() {
  const [p, error] = usePoll(() => api("/system/platform"), 5000);
  const [info] = usePoll(() => api("/system/info"), 0);
  return html`<section>
    <div class="bar"><h1>Platform</h1></div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${p && html`<div class="grid">
      <section class="panel" id="platform">
        <h2>This platform</h2>
        <dl>
          <dt>Backend</dt><dd id="backend">${p.backend}</dd>
          <dt>Version</dt><dd>${p.version}${info && info.version && info.version.sha ? html` <code>${info.version.sha.slice(0, 12)}</code>` : ""}</dd>
          <dt>Functions</dt><dd>${p.functions}</dd>
          <dt>Queue</dt><dd>${p.queue.kind}: ${p.queue.ok ? html`<span class="good">reachable</span>` : html`<span class="bad">${p.queue.error}</span>`}</dd>
          <dt>Warm pool</dt><dd>${p.warmPool.ready === null ? "none on this backend" : `${p.warmPool.ready} ready of ${p.warmPool.size}`}</dd>
          <dt>This gateway</dt><dd><code>${p.gateway}</code></dd>
          <dt>Gateways seen</dt><dd>${p.gateways.length ? html`<ul class="pairs">${p.gateways.map((g) => html`<li><code>${g.id}</code> ${ago(g.seen)}</li>`)}</ul>` : "none"}</dd>
        </dl>
      </section>
      <section class="panel">
        <h2>Autoscaler</h2>
        <dl>
          <dt>Running</dt><dd>${p.autoscaler.enabled ? "yes" : "no (STOKER_AUTOSCALE=0)"}</dd>
          <dt>Tick</dt><dd>${p.autoscaler.tickSeconds} s</dd>
          <dt>Stable window</dt><dd>${p.autoscaler.stableWindowSeconds} s</dd>
          <dt>Panic window</dt><dd>${p.autoscaler.panicWindowSeconds} s at ${p.autoscaler.panicThreshold}× target</dd>
          <dt>Scale rates</dt><dd>up ×${p.autoscaler.maxScaleUpRate}, down ÷${p.autoscaler.maxScaleDownRate}</dd>
          <dt>Console</dt><dd>a point every ${p.console.sampleSeconds} s; sessions last ${p.console.sessionSeconds / 3600} h</dd>
        </dl>
      </section>
    </div>`}
  </section>`;
}
