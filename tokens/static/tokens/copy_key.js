// The page that shows a new service client's key once (admin/tokens/serviceclient/key_issued.html):
// a button copies the key; the page's address becomes the client's own page, so that reloading
// it shows that page (without the key) instead of posting the "add" form again.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
    const key = document.getElementById("service-client-key");
    const button = document.getElementById("copy-key");
    const status = document.getElementById("copy-key-status");
    if (!key || !button || !status) {
        return;
    }
    if (key.dataset.clientUrl) {
        window.history.replaceState(null, "", key.dataset.clientUrl);
    }
    button.hidden = false;
    button.addEventListener("click", async () => {
        try {
            await navigator.clipboard.writeText(key.textContent.trim());
            status.textContent = "Copied.";
        } catch (error) {
            // No clipboard (an insecure origin, or permission refused): select it for Ctrl+C.
            window.getSelection().selectAllChildren(key);
            status.textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy.";
        }
    });
});
