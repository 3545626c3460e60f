// A tiny event emitter: `on`, `off`, `once`, `emit`. A handler that throws does not stop the
// others or the SDK: the exception goes to `reportError` (the browser's, as for a DOM event
// listener) or to the console.

/** Minimal event emitter used by sessions and links. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
  }

  /** Adds `handler` for `event`; returns a function that removes it. */
  on(event, handler) {
    let set = this._handlers.get(event);
    if (!set) this._handlers.set(event, (set = new Set()));
    set.add(handler);
    return () => this.off(event, handler);
  }

  /** Removes `handler` for `event`. */
  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
  }

  /** Adds a handler that runs once. */
  once(event, handler) {
    const off = this.on(event, (...args) => {
      off();
      handler(...args);
    });
    return off;
  }

  /** Calls every handler of `event` with `args`; returns whether there was one. */
  emit(event, ...args) {
    const set = this._handlers.get(event);
    if (!set || set.size === 0) return false;
    for (const handler of [...set]) {
      try {
        handler(...args);
      } catch (e) {
        const report = globalThis.reportError || ((err) => console.error(err));
        report(e);
      }
    }
    return true;
  }
}
