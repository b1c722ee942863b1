// taskfire dashboard: live counts, graphs and queue table from /api/stats (a toggle
// turns polling off), times in the viewer's time zone or UTC, "select all", and a
// confirmation before every destructive action. The pages work without it (times in UTC,
// no live refresh, no confirmation). No inline script anywhere: the Content-Security-Policy
// allows only this file.
(function () {
  "use strict";
  const body = document.body;
  const every = Math.max(500, parseInt(body.dataset.refresh || "2000", 10));
  const store = {
    get(name, fallback) { try { return localStorage.getItem("taskfire." + name) || fallback; } catch (e) { return fallback; } },
    set(name, value) { try { localStorage.setItem("taskfire." + name, value); } catch (e) { /* private mode */ } },
  };
  const number = (n) => Number(n).toLocaleString("en-US");
  const css = (name) => getComputedStyle(body).getPropertyValue(name).trim();

  // -- times ------------------------------------------------------------------------
  const pad = (n) => String(n).padStart(2, "0");
  function exact(date, zone) {
    if (zone === "utc") {
      return `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ` +
        `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} UTC`;
    }
    const offset = -date.getTimezoneOffset();
    const sign = offset >= 0 ? "+" : "-";
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ` +
      `UTC${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  }
  // As humanize.naturaltime says it on the server.
  function relative(ms) {
    const s = Math.abs(ms) / 1000;
    const units = [[60, "second", 1], [3600, "minute", 60], [86400, "hour", 3600], [2592000, "day", 86400],
      [31536000, "month", 2592000], [Infinity, "year", 31536000]];
    let text = "now";
    if (s >= 1) {
      for (const [limit, unit, size] of units) {
        if (s < limit) {
          const n = Math.floor(s / size);
          text = n === 1 ? (unit === "hour" ? "an hour" : `a ${unit}`) : `${n} ${unit}s`;
          break;
        }
      }
      text += ms >= 0 ? " ago" : " from now";
    }
    return text;
  }
  function showTimes() {
    const zone = store.get("tz", "local");
    const now = Date.now();
    document.querySelectorAll("time[datetime]").forEach((el) => {
      const date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) return;
      el.title = exact(date, zone);
      el.textContent = relative(now - date.getTime());
    });
  }

  // -- charts -----------------------------------------------------------------------
  // A line chart with a time axis, gridlines and a tooltip: series [{name, color, values}]
  // over `times` (ms since the epoch, one per value).
  function chart(canvas, times, series, label) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = w * ratio;
    canvas.height = h * ratio;
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, w, h);
    const left = 44, right = 8, top = 8, bottom = 22;
    const max = Math.max(1, ...series.flatMap((s) => s.values));
    const step = niceStep(max / 4);
    const ceiling = Math.ceil(max / step) * step;
    const n = Math.max(2, times.length);
    const x = (i) => left + (i / (n - 1)) * (w - left - right);
    const y = (v) => top + (1 - v / ceiling) * (h - top - bottom);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = css("--muted");
    ctx.strokeStyle = css("--line");
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = 0; v <= ceiling + step / 2; v += step) {  // gridlines and the value axis
      ctx.beginPath(); ctx.moveTo(left, Math.round(y(v)) + 0.5); ctx.lineTo(w - right, Math.round(y(v)) + 0.5); ctx.stroke();
      ctx.fillText(compact(v), left - 6, y(v));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const ticks = Math.max(2, Math.min(8, Math.floor((w - left) / 90)));
    for (let t = 0; t < ticks; t++) {  // the time axis
      const i = Math.round((t / (ticks - 1)) * (times.length - 1));
      if (times[i] !== undefined) ctx.fillText(label(times[i]), Math.min(Math.max(x(i), left + 20), w - right - 20), h - bottom + 6);
    }
    series.forEach((s) => {
      ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.beginPath();
      s.values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
      ctx.stroke();
    });
    canvas.chart = { times, series, x, left, right, w, label };
  }
  function niceStep(raw) {
    const power = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
    const f = raw / power;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
  }
  function compact(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + "M";
    if (v >= 1e3) return (v / 1e3).toFixed(v % 1e3 ? 1 : 0) + "k";
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }
  function tooltip(canvas) {
    const tip = document.createElement("div");
    tip.className = "tooltip";
    tip.hidden = true;
    canvas.parentNode.appendChild(tip);
    canvas.addEventListener("mousemove", (event) => {
      const c = canvas.chart;
      if (!c || !c.times.length) return;
      const rect = canvas.getBoundingClientRect();
      const px = event.clientX - rect.left;
      const i = Math.round(((px - c.left) / (c.w - c.left - c.right)) * (Math.max(2, c.times.length) - 1));
      if (i < 0 || i >= c.times.length) { tip.hidden = true; return; }
      tip.textContent = "";
      const head = document.createElement("b");
      head.textContent = c.label(c.times[i], true);
      tip.appendChild(head);
      c.series.forEach((s) => {
        const line = document.createElement("div");
        const key = document.createElement("span");
        key.className = "key " + s.key;
        line.appendChild(key);
        line.appendChild(document.createTextNode(`${s.name}: ${number(Math.round(s.values[i] * 10) / 10)}`));
        tip.appendChild(line);
      });
      tip.hidden = false;
      tip.style.left = Math.min(c.x(i) + 12, c.w - tip.offsetWidth - 4) + "px";
      tip.style.top = "8px";
    });
    canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  }
  function parts(ms) {
    const d = new Date(ms);
    const utc = store.get("tz", "local") === "utc";
    return {
      utc, day: `${pad((utc ? d.getUTCMonth() : d.getMonth()) + 1)}-${pad(utc ? d.getUTCDate() : d.getDate())}`,
      hh: pad(utc ? d.getUTCHours() : d.getHours()), mm: pad(utc ? d.getUTCMinutes() : d.getMinutes()),
      ss: pad(utc ? d.getUTCSeconds() : d.getSeconds()),
    };
  }
  function hourLabel(ms, long) {
    const p = parts(ms);
    return long ? `${p.day} ${p.hh}:00–${p.hh}:59${p.utc ? " UTC" : ""}` : `${p.hh}:00`;
  }
  function dayLabel(ms, long) {
    return long ? hourLabel(ms, true) : parts(ms).day;
  }
  let hourly = null;  // the last week's buckets, as last read
  function drawHistory(fresh) {
    if (fresh) hourly = fresh;
    document.querySelectorAll("canvas.history").forEach((canvas) => {
      const data = hourly || JSON.parse(canvas.dataset.history);
      const hours = parseInt(canvas.dataset.hours, 10);
      const first = data.first_hour * 1000;
      const all = data.succeeded.map((_, i) => first + i * 3600000);
      chart(canvas, all.slice(-hours), [
        { name: "succeeded", key: "ok", color: css("--ok"), values: data.succeeded.slice(-hours) },
        { name: "failed", key: "bad", color: css("--bad"), values: data.failed.slice(-hours) },
      ], hours > 48 ? dayLabel : hourLabel);
    });
  }
  const realtime = document.getElementById("realtime");
  const points = [];
  function secondLabel(ms, long) {
    const p = parts(ms);
    return `${p.hh}:${p.mm}:${p.ss}${long && p.utc ? " UTC" : ""}`;
  }
  function drawRealtime() {
    if (!realtime) return;
    chart(realtime, points.map((p) => p[0]), [
      { name: "succeeded/s", key: "ok", color: css("--ok"), values: points.map((p) => p[1]) },
      { name: "failed/s", key: "bad", color: css("--bad"), values: points.map((p) => p[2]) },
    ], secondLabel);
  }

  // -- live refresh -----------------------------------------------------------------
  let last = null;
  let timer = null;
  function setText(selector, value) {
    document.querySelectorAll(selector).forEach((el) => { el.textContent = number(value); });
  }
  function showQueues(queues) {
    const tbody = document.querySelector("tbody[data-queues]");
    if (!tbody) return;
    const link = tbody.dataset.link;
    const rows = queues.map((q) => {
      const tr = document.createElement("tr");
      const name = document.createElement("td");
      const a = document.createElement("a");
      a.href = `${link}?queue=${encodeURIComponent(q.name)}`;
      a.textContent = q.name;
      name.appendChild(a);
      const length = document.createElement("td");
      length.className = "num";
      length.textContent = number(q.length);
      const state = document.createElement("td");
      if (q.paused) {
        const pill = document.createElement("span");
        pill.className = "pill bad";
        pill.textContent = "paused";
        state.appendChild(pill);
      } else {
        state.textContent = "active";
      }
      tr.append(name, length, state);
      return tr;
    });
    if (rows.length) tbody.replaceChildren(...rows);
  }
  async function poll() {
    timer = null;
    try {
      const r = await fetch(body.dataset.stats, { credentials: "same-origin" });
      if (r.ok) {
        const s = await r.json();
        for (const [state, n] of Object.entries(s.states)) setText(`[data-count="${CSS.escape(state)}"]`, n);
        setText('[data-count="Retries"]', s.retries);
        for (const name of ["servers", "recurring"]) setText(`[data-stat="${name}"]`, s[name]);
        for (const [name, n] of Object.entries(s.totals)) setText(`[data-total="${name}"]`, n);
        showQueues(s.queues);
        drawHistory(s.hourly);
        if (last) {
          const dt = Math.max(0.001, s.time - last.time);
          points.push([s.time * 1000, Math.max(0, (s.totals.succeeded - last.totals.succeeded) / dt),
            Math.max(0, (s.totals.failed - last.totals.failed) / dt)]);
          if (points.length > 60) points.shift();
          drawRealtime();
        }
        last = s;
        showTimes();
      }
    } catch (e) { /* Redis or the dashboard restarting: the next poll tries again */ }
    if (store.get("live", "on") === "on") timer = setTimeout(poll, every);
  }

  // -- preferences --------------------------------------------------------------------
  document.querySelectorAll('[data-pref="live"]').forEach((box) => {
    box.checked = store.get("live", "on") === "on";
    box.addEventListener("change", () => {
      store.set("live", box.checked ? "on" : "off");
      if (box.checked && timer === null) poll();
      if (!box.checked && timer !== null) { clearTimeout(timer); timer = null; }
    });
  });
  document.querySelectorAll('[data-pref="tz"]').forEach((select) => {
    select.value = store.get("tz", "local");
    select.addEventListener("change", () => { store.set("tz", select.value); showTimes(); drawHistory(); drawRealtime(); });
  });

  // -- forms ------------------------------------------------------------------------
  function boxesOf(form) {
    return Array.from(document.querySelectorAll('input[name="ids"]')).filter((c) => c.form === form);
  }
  document.querySelectorAll("[data-select-all]").forEach((box) => {
    const form = box.dataset.selectAll ? document.getElementById(box.dataset.selectAll) : box.closest("form");
    box.addEventListener("change", () => { boxesOf(form).forEach((c) => { c.checked = box.checked; }); });
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    let question = form.dataset.confirm;
    const button = event.submitter;
    if (form.hasAttribute("data-confirm-selected") && button && button.classList.contains("danger")) {
      const n = boxesOf(form).filter((c) => c.checked).length;
      const noun = form.dataset.confirmSelected || "job";
      question = `${button.textContent.replace(/ selected$/, "")} ${number(n)} selected ${noun}${n === 1 ? "" : "s"}?`;
    }
    if (question && !window.confirm(question)) event.preventDefault();
  });

  showTimes();
  drawHistory();
  document.querySelectorAll("canvas.history, #realtime").forEach(tooltip);
  window.addEventListener("resize", () => { drawHistory(); drawRealtime(); });
  if (store.get("live", "on") === "on") poll();
})();
