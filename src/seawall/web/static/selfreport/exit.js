// Quick exit: leave for a neutral page without adding this page to the back button's history.
const exit = document.getElementById("quick-exit");
if (exit) {
  exit.addEventListener("click", (event) => {
    event.preventDefault();
    document.body.hidden = true;
    window.location.replace(exit.href);
  });
  // Escape pressed twice quickly leaves too (a habit of other help sites).
  let last = 0;
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const now = Date.now();
    if (now - last < 800) exit.click();
    last = now;
  });
}
