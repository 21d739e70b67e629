// Draws the charts from the JSON the dashboard serves (GET /api/v1/dashboard/charts).
(function () {
  var palette = ["#0b5cad", "#b35900", "#1a7f37", "#8250df", "#a4141d", "#0a7480", "#6e7781"];
  var charts = {};
  function line(id, labels, series, yTitle) {
    var datasets = Object.keys(series).map(function (name, i) {
      return { label: name, data: series[name], borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length], spanGaps: true, pointRadius: 0, tension: 0.2 };
    });
    draw(id, "line", labels, datasets, yTitle);
  }
  function draw(id, type, labels, datasets, yTitle) {
    var canvas = document.getElementById(id);
    if (!canvas) { return; }
    if (charts[id]) { charts[id].data.labels = labels; charts[id].data.datasets = datasets; charts[id].update("none"); return; }
    charts[id] = new window.Chart(canvas, {
      type: type, data: { labels: labels, datasets: datasets },
      options: { animation: false, responsive: true, interaction: { mode: "index", intersect: false },
        scales: { y: { beginAtZero: true, title: { display: !!yTitle, text: yTitle || "" } } } }
    });
  }
  function short(iso) { return iso.slice(11, 16); }
  function render(d) {
    var labels = d.labels.map(function (x) { return d.hours > 24 ? x.slice(5, 10) + " " + short(x) : short(x); });
    line("throughput", labels, d.throughput, "changes");
    var latency = {};
    Object.keys(d.latency_p50).forEach(function (f) { latency[f + " p50"] = d.latency_p50[f]; latency[f + " p99"] = d.latency_p99[f]; });
    line("latency", labels, latency, "seconds");
    line("depth", labels, { "queue depth": d.queue_depth }, "changes");
    var budgets = d.budgets.filter(function (b) { return b.limit; });
    draw("budget", "bar", budgets.map(function (b) { return b.connection + " (" + b.window + ")"; }),
      [{ label: "% of the limit used", data: budgets.map(function (b) { return Math.round(1000 * b.used / b.limit) / 10; }), backgroundColor: palette[0] }], "%");
    if (d.workload) {
      document.getElementById("workload-figure").hidden = false;
      line("workload", d.workload.days, d.workload.lists, "cards");
    }
  }
  function load() {
    var box = document.querySelector(".charts");
    if (!box || !window.Chart) { return; }
    fetch(box.dataset.source, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); }).then(render);
  }
  document.addEventListener("DOMContentLoaded", function () { load(); setInterval(load, 10000); });
})();
