// Sort the flagged records by a column (click its header) and filter them (text, minimum score).
// No network, no eval, no inline handlers: the page's Content-Security-Policy allows this script only.
(function () {
  "use strict";
  var table = document.getElementById("flagged");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var text = document.getElementById("filter-text");
  var minScore = document.getElementById("filter-score");
  var count = document.getElementById("filter-count");

  function key(row, column) {  // numbers carry data-sort (the exact value); text sorts as shown
    var cell = row.cells[column];
    var raw = cell.getAttribute("data-sort");
    return raw === null ? cell.textContent.trim().toLowerCase() : parseFloat(raw);
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
    if (!header.hasAttribute("data-sortable")) { return; }
    header.addEventListener("click", function () {
      var descending = header.getAttribute("aria-sort") !== "descending";
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", descending ? "descending" : "ascending");
      rows.sort(function (a, b) {
        var x = key(a, column), y = key(b, column);
        var order = x < y ? -1 : x > y ? 1 : 0;
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });

  function filter() {
    var needle = text.value.trim().toLowerCase();
    var floor = parseFloat(minScore.value);
    var shown = 0;
    rows.forEach(function (row) {
      var score = parseFloat(row.getAttribute("data-score"));
      // name=value is one of the record's values (its detail section's) or its verdict, whole: country=FR
      // is not home_country=FR, hour=1 not hour=13; other text is looked for in the row and the values.
      var values = row.getAttribute("data-values").toLowerCase();
      var found = needle.indexOf("=") === -1
        ? (row.textContent.toLowerCase() + "\n" + values).indexOf(needle) !== -1
        : values.split("\n").indexOf(needle.replace(/\s*=\s*/, "=")) !== -1;
      var keep = (!needle || found) && (isNaN(floor) || score >= floor);
      row.hidden = !keep;
      shown += keep ? 1 : 0;
    });
    count.textContent = shown + " of " + rows.length + " shown";
  }
  text.addEventListener("input", filter);
  minScore.addEventListener("input", filter);
  filter();
})();
