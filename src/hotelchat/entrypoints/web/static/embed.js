// HotelChat web chat for a hotel's website. Add before </body>:
//   <script src="https://YOUR-HOTELCHAT/static/embed.js" data-hotel="YOUR-HOTEL-SLUG" async></script>
// It adds a chat button; the chat itself runs in an iframe on HotelChat's origin, so the
// website's styles and scripts cannot touch it. A reservation link made for this page
// (`hotelchat reservations link --site <this page>`, ending `#hotelchat-r=…`) opens the chat
// at once, tied to the guest's reservation, and leaves the address bar.
"use strict";

(() => {
  const script = document.currentScript;
  if (!script || !script.dataset.hotel) return;
  const origin = new URL(script.src).origin;
  const src = `${origin}/chat/${encodeURIComponent(script.dataset.hotel)}?embed=1`;

  // The link travels in the fragment: browsers never send it to the website's server either.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const reservation = fragment.get("hotelchat-r");
  if (reservation) {
    fragment.delete("hotelchat-r");
    const rest = fragment.toString();
    history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }

  const button = document.createElement("button");
  button.type = "button";
  button.textContent = script.dataset.label || "Chat with us";
  button.setAttribute("aria-expanded", "false");
  Object.assign(button.style, {
    position: "fixed", right: "20px", bottom: "20px", zIndex: "2147483000",
    padding: "12px 18px", borderRadius: "24px", border: "none", cursor: "pointer",
    background: "#0f766e", color: "#fff", font: "600 15px system-ui, sans-serif",
    boxShadow: "0 4px 14px rgba(0,0,0,.25)",
  });

  let frame = null;
  function toggle() {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.src = reservation ? `${src}#r=${encodeURIComponent(reservation)}` : src;
      frame.title = "Chat with the hotel";
      Object.assign(frame.style, {
        position: "fixed", right: "20px", bottom: "76px", zIndex: "2147483000",
        width: "min(380px, calc(100vw - 40px))", height: "min(560px, calc(100vh - 100px))",
        border: "1px solid #d4d4d8", borderRadius: "12px", background: "#fff",
        boxShadow: "0 8px 30px rgba(0,0,0,.25)",
      });
      document.body.appendChild(frame);
    } else {
      frame.hidden = !frame.hidden;
    }
    button.setAttribute("aria-expanded", String(!frame.hidden));
  }
  button.addEventListener("click", toggle);
  document.body.appendChild(button);
  if (reservation) toggle();
})();
