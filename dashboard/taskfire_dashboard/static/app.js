// taskfire dashboard: live counters and graphs from /api/stats, and "select all".
(function () {
  const body = document.body;
  const every = Math.max(500, parseInt(body.dataset.refresh || "2000", 10));
  const realtime = document.getElementById("realtime");
  const points = [];
  let last = null;

  function draw(canvas, series, colors) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width = canvas.clientWidth * (window.devicePixelRatio || 1);
    const h = canvas.height = canvas.clientHeight * (window.devicePixelRatio || 1);
    ctx.clearRect(0, 0, w, h);
    const max = Math.max(1, ...series.flat());
    const n = Math.max(2, series[0].length);
    series.forEach((values, k) => {
      ctx.strokeStyle = colors[k]; ctx.lineWidth = 2; ctx.beginPath();
      values.forEach((v, i) => {
        const x = (i / (n - 1)) * (w - 4) + 2, y = h - 4 - (v / max) * (h - 20);
        i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      });
      ctx.stroke();
    });
    ctx.fillStyle = getComputedStyle(body).color; ctx.font = "12px system-ui";
    ctx.fillText(String(Math.round(max * 10) / 10), 4, 12);
  }

  document.querySelectorAll("canvas.history").forEach((canvas) => {
    const data = JSON.parse(canvas.dataset.history);
    const hours = parseInt(canvas.dataset.hours, 10);
    draw(canvas, [data.succeeded.slice(-hours), data.failed.slice(-hours)], ["#2f9e44", "#d6336c"]);
  });

  async function poll() {
    try {
      const r = await fetch(body.dataset.stats, { credentials: "same-origin" });
      if (r.ok) {
        const s = await r.json();
        for (const [state, n] of Object.entries(s.states)) {
          document.querySelectorAll(`[data-count="${state}"]`).forEach((el) => { el.textContent = n; });
        }
        if (realtime && last) {
          const dt = Math.max(0.001, s.time - last.time);
          points.push([(s.totals.succeeded - last.totals.succeeded) / dt, (s.totals.failed - last.totals.failed) / dt]);
          if (points.length > 60) points.shift();
          draw(realtime, [points.map((p) => p[0]), points.map((p) => p[1])], ["#2f9e44", "#d6336c"]);
        }
        last = s;
      }
    } catch (e) { /* Redis or the dashboard restarting: the next poll tries again */ }
    setTimeout(poll, every);
  }
  poll();

  document.querySelectorAll("[data-select-all]").forEach((box) => {
    box.addEventListener("change", () => {
      box.closest("form").querySelectorAll('input[name="ids"]').forEach((c) => { c.checked = box.checked; });
    });
  });
})();
