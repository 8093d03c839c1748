import { useEffect, useRef, useState } from "../vendor/htm-preact.module.js";

// Calls load() now and every `every` ms while the component is shown; returns [data, error, reload].
export function usePoll(load, every, deps = []) {
  const [data, setData] = useState(null);
  const [error, setError] = useState("");
  const tick = useRef(0);
  const [reloads, setReloads] = useState(0);
  useEffect(() => {
    let live = true;
    let timer = null;
    const run = async () => {
      const mine = ++tick.current;
      try {
        const d = await load();
        if (live && mine === tick.current) {
          setData(d);
          setError("");
        }
      } catch (e) {
        if (live) setError(e.message || String(e));
      }
      if (live && every) timer = setTimeout(run, every);
    };
    run();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [...deps, reloads]);
  return [data, error, () => setReloads((n) => n + 1)];
}
