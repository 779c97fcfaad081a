// Sorting by column and filtering by protocol or text; the pages work without it.
(function () {
  function cellValue(row, i, type) {
    var td = row.cells[i];
    if (!td) return type === "num" ? Infinity : "";
    var v = td.getAttribute("data-value");
    if (type === "num") { var x = parseFloat(v === null ? td.textContent : v); return isNaN(x) ? Infinity : x; }
    return td.textContent.trim().toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var ths = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(ths, function (th, i) {
      th.setAttribute("role", "button");
      th.addEventListener("click", function () {
        var type = th.getAttribute("data-type") || "text";
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(ths, function (o) { o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, i, type), y = cellValue(b, i, type);
          if (x === y) return 0;
          if (type === "num" && !isFinite(x)) return 1;
          if (type === "num" && !isFinite(y)) return -1;
          return (x < y ? -1 : 1) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var sel = document.getElementById("protocol-filter");
  var text = document.getElementById("row-filter");
  function apply() {
    var p = sel ? sel.value : "";
    var q = text ? text.value.trim().toLowerCase() : "";
    document.querySelectorAll("section.group").forEach(function (s) {
      s.hidden = !!p && s.getAttribute("data-protocol") !== p;
    });
    document.querySelectorAll("section.references tbody tr[data-protocol]").forEach(function (r) {
      r.hidden = !!p && r.getAttribute("data-protocol") !== p;
    });
    document.querySelectorAll("section.group tbody tr").forEach(function (r) {
      r.hidden = !!q && r.textContent.toLowerCase().indexOf(q) < 0;
    });
  }
  if (sel) sel.addEventListener("change", apply);
  if (text) text.addEventListener("input", apply);
})();
