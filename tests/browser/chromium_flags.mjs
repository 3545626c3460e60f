// The Chromium flags every browser test starts with (tests/*.rs run the scripts with Debian's
// chromium through playwright-core).

// Headless in a container without a sandbox, nothing fetched in the background, and no QUIC
// (the tests' servers speak HTTP over TCP).
export const BASE_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// The timers of a hidden headless page run at full rate: the scripts' send loops and the SDK's
// link timers drive the tests.
export const UNTHROTTLED_FLAGS = [
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];
