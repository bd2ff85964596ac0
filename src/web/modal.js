// Opens a <dialog> as a modal; when it closes, focus goes back to what opened it, so a
// keyboard user lands where they were.

export function showModal(dialog, opener) {
  if (dialog.open) return;
  dialog.showModal();
  dialog.addEventListener('close', () => opener?.isConnected && opener.focus(), { once: true });
}
