/**
 * A classic script, which a browser runs from file:// where it refuses the app's ES modules
 * (main.js): opened from disk, the page would say "Loading the model…" for ever. It says how
 * to open it instead. Served over http(s) it does nothing.
 */
if (location.protocol === "file:") {
  document.addEventListener("DOMContentLoaded", () => {
    // The folder of index.html ("/C:/…" on Windows is "C:/…").
    const folder = decodeURIComponent(location.pathname.replace(/\/[^/]*$/, "")).replace(/^\/([A-Za-z]:)/, "$1");
    const error = document.getElementById("error");
    error.textContent = "This page cannot run from a file (the browser blocks its scripts there): serve its " +
      `folder with 'python -m http.server -d ${folder} 8000' and open http://localhost:8000/`;
    error.hidden = false;
    document.getElementById("status").textContent = "";
    document.getElementById("model-line").textContent = "The attributor could not start.";
  });
}
