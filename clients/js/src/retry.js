// Waiting before trying again: jittered exponential backoff and sleeps that can be cut short.

const MAX_BACKOFF_MS = 30000;

/**
 * The wait before try number `failures + 1`: `baseMs` doubled per failure,
 * capped, with "equal jitter" (half fixed, half random) so that clients cut
 * off together do not come back together.
 */
export function backoff(failures, baseMs = 500) {
  const ceiling = Math.min(baseMs * 2 ** Math.max(failures - 1, 0), MAX_BACKOFF_MS);
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

/** How long to wait after `err`: what the server asked for (Retry-After), else backoff. */
export function retryDelay(err, failures, baseMs) {
  return err?.retryAfterMs ?? backoff(failures, baseMs);
}

/** Resolves after `ms`, or as soon as any of `signals` aborts (never rejects). */
export function sleep(ms, ...signals) {
  return new Promise((resolve) => {
    const live = signals.filter(Boolean);
    const done = () => {
      clearTimeout(timer);
      for (const signal of live) signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const signal of live) {
      if (signal.aborted) return done();
      signal.addEventListener("abort", done, { once: true });
    }
  });
}

/** A signal that aborts when `wake()` is called, renewed after each wake. */
export class Waker {
  constructor() {
    this.controller = new AbortController();
  }

  get signal() {
    return this.controller.signal;
  }

  wake() {
    this.controller.abort();
    this.controller = new AbortController();
  }
}
