// Poll a condition until it holds or a deadline passes: tests never sleep a fixed time.
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 30_000, intervalMs = 50, stopOn }: { timeoutMs?: number; intervalMs?: number; stopOn?: (err: unknown) => boolean } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (stopOn?.(err)) throw new Error(`gave up waiting for ${what}: ${err instanceof Error ? err.message : String(err)}`);
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const why = lastErr instanceof Error ? String(lastErr) : JSON.stringify(lastErr);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${why}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
