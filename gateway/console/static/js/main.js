import { html, render, useEffect, useState } from "../vendor/htm-preact.module.js";
import { csrf } from "./api.js";
import { Overview } from "./overview.js";
import { FunctionPage } from "./function.js";
import { Queues } from "./queues.js";
import { Platform } from "./platform.js";

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const fn = hash.match(/^\/function\/([a-z0-9-]+)\.([a-z0-9-]+)$/);
  if (fn) return { page: "function", name: fn[1], namespace: fn[2] };
  if (hash === "/queues") return { page: "queues" };
  if (hash === "/platform") return { page: "platform" };
  return { page: "overview" };
}

function Nav({ page }) {
  const link = (href, name, label) =>
    html`<a href=${href} aria-current=${page === name ? "page" : undefined}>${label}</a>`;
  return html`<header class="top">
    <a class="brand" href="#/">stoker</a>
    <nav>${link("#/", "overview", "Functions")} ${link("#/queues", "queues", "Queues")}
      ${link("#/platform", "platform", "Platform")}</nav>
    ${csrf &&
    html`<form method="post" action="/ui/logout" class="logout">
      <input type="hidden" name="csrf" value=${csrf} />
      <button type="submit">Log out</button>
    </form>`}
  </header>`;
}

function App() {
  const [where, setWhere] = useState(route());
  useEffect(() => {
    const on = () => setWhere(route());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  let body;
  if (where.page === "function")
    body = html`<${FunctionPage} key=${where.name + "." + where.namespace} name=${where.name} namespace=${where.namespace} />`;
  else if (where.page === "queues") body = html`<${Queues} />`;
  else if (where.page === "platform") body = html`<${Platform} />`;
  else body = html`<${Overview} />`;
  return html`<${Nav} page=${where.page} /><main id="page">${body}</main>`;
}

const root = document.getElementById("app");
root.textContent = "";
render(html`<${App} />`, root);
