// Ninja PBX portal: copy buttons and small form helpers (no dependencies; works offline).
// Copy buttons: <button data-copy="#id">; falls back to selecting the text.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.querySelector(button.getAttribute("data-copy"));
  if (!source) return;
  var text = source.textContent.trim();
  var done = function () {
    button.textContent = "Copied";
    var status = document.getElementById(button.getAttribute("aria-describedby") || "");
    if (status) status.textContent = "Copied to the clipboard.";
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () { select(source); });
  } else {
    select(source);
    try { if (document.execCommand("copy")) done(); } catch (e) { /* selected for manual copy */ }
  }
  function select(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
});

// "Generate / I will choose": show the password field only when the customer chooses one.
document.addEventListener("DOMContentLoaded", function () {
  var field = document.getElementById("id_password");
  var radios = document.querySelectorAll("input[name=password_mode]");
  if (!field || !radios.length) return;
  var group = field.closest(".field") || field.parentNode;
  var sync = function () {
    var custom = document.querySelector("input[name=password_mode][value=custom]");
    group.hidden = !(custom && custom.checked);
  };
  radios.forEach(function (radio) { radio.addEventListener("change", sync); });
  sync();
});

// Forms that undo something ask first: <form data-confirm="Question?">.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

// Live registration state: a table with data-live-registrations="<url>" has cells
// data-registration="<account id>"; without JavaScript they keep their "Live status" link.
document.addEventListener("DOMContentLoaded", function () {
  var table = document.querySelector("[data-live-registrations]");
  if (!table || !window.fetch) return;
  var cells = table.querySelectorAll("[data-registration]");
  if (!cells.length) return;
  var ids = Array.prototype.map.call(cells, function (cell) { return cell.getAttribute("data-registration"); });
  var url = table.getAttribute("data-live-registrations") + "?ids=" + ids.join(",");
  fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) { return response.ok ? response.json() : null; })
    .then(function (body) {
      if (!body) return;
      cells.forEach(function (cell) {
        var live = body.accounts[cell.getAttribute("data-registration")];
        var link = cell.querySelector("a");
        if (!live || !link) return;
        var badge = document.createElement("span");
        badge.className = "badge " + ({ registered: "ok", unregistered: "warn" }[live.state] || "");
        badge.textContent = live.label;
        badge.setAttribute("data-state", live.state);
        cell.insertBefore(badge, link);
        cell.insertBefore(document.createTextNode(" "), link);
        link.textContent = "details";
      });
    })
    .catch(function () { /* the links stay */ });
});
