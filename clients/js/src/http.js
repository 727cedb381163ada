// HTTP to relay: the token, the request, and relay's JSON errors (API.md, Errors).
//
// Deliberate choices:
// - The token comes from the caller's `getToken()`, called when there is
//   none yet, when the one held expires within REFRESH_BEFORE_MS (read from
//   the JWT's `exp`; a token that is not a JWT is kept until refused), and
//   once more after a 401. A second 401 in a row is final: the app must
//   sign the user in again, so nothing retries it (`Auth.state`).
// - Every failure is one `RelayError`: `status` and API.md's `code` for an
//   HTTP error (with its `message`, the server's sentence), status 0 and
//   code `network_error` when no whole answer came back.

const REFRESH_BEFORE_MS = 5000;

/** An error from relay (`status`, `code`, `message`), or a request that got no whole answer. */
export class RelayError extends Error {
  constructor(message, { status = 0, code = "network_error", retryAfterMs = null, body = null, cause } = {}) {
    super(message, { cause });
    this.name = "RelayError";
    this.status = status;
    // The AI SDK's errors carry `statusCode`: apps tell HTTP errors from cuts by it.
    if (status) this.statusCode = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    this.body = body;
  }
}

/** A Retry-After header (seconds, or an HTTP date) in milliseconds, or null. */
export function retryAfterMs(header) {
  if (!header) return null;
  if (/^\s*\d+\s*$/.test(header)) return Number(header) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

/** A non-2xx response as a RelayError, with the server's code and message when it sent JSON. */
export async function errorOf(response) {
  const body = await response.json().catch(() => null);
  const error = body?.error;
  return new RelayError(error?.message || `HTTP ${response.status}`, {
    status: response.status,
    code: error?.code || `http_${response.status}`,
    retryAfterMs: retryAfterMs(response.headers.get("Retry-After")),
    body,
  });
}

/** When a JWT expires (ms since the epoch), or Infinity for a token we cannot read. */
export function expiresAt(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(payload)).exp;
    return typeof exp === "number" ? exp * 1000 : Infinity;
  } catch {
    return Infinity;
  }
}

/** The access token: asked of `getToken()` when missing, expiring, or refused once. */
export class Auth {
  constructor({ getToken, token } = {}) {
    this.getToken = getToken || (token ? () => token : null);
    this.current = null;
    this.pending = null;
    this.state = "ok"; // "ok" or "unauthorized" (refused twice in a row: stop)
  }

  /** The token to send (null without one); `fresh` asks getToken() again. */
  async token(fresh = false) {
    if (!this.getToken) return null;
    if (!fresh && this.current && expiresAt(this.current) - Date.now() > REFRESH_BEFORE_MS) {
      return this.current;
    }
    // Concurrent requests share one call.
    this.pending ||= Promise.resolve(this.getToken({ fresh })).finally(() => (this.pending = null));
    this.current = await this.pending;
    return this.current;
  }
}

/**
 * fetch `url` with the token; on a 401, once more with a fresh one. Returns
 * the Response when it is a success, else throws a RelayError.
 */
export async function authorizedFetch(fetchFn, auth, url, init = {}) {
  for (let fresh = false; ; fresh = true) {
    const headers = { ...init.headers };
    const token = await auth.token(fresh);
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetchFn(url, { cache: "no-store", ...init, headers });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new RelayError("Cannot reach the server.", { cause: err });
    }
    if (response.ok) {
      auth.state = "ok";
      return response;
    }
    if (response.status === 401 && !fresh && auth.getToken) continue;
    const err = await errorOf(response);
    if (response.status === 401) auth.state = "unauthorized";
    throw err;
  }
}
