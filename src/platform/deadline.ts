// One way to put a time limit on work that cannot be cancelled (a query or command already
// sent): the caller stops waiting, the work finishes or fails on its own, unobserved.

/**
 * `work`, or `timeoutError()` once timeoutMs have passed without it settling. When the timer
 * fires, the rejection waits until this turn of the event loop has read the sockets
 * (setImmediate runs after the poll phase), so a reply that arrived in time while the loop was
 * busy still counts and is not mistaken for a missing one.
 */
export function withDeadline<T>(work: Promise<T>, timeoutMs: number, timeoutError: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (settled) return;
        settled = true;
        reject(timeoutError());
      });
    }, timeoutMs);
    work.then(
      (value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
