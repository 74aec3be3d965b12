// Where a call's time goes, for its log line: `lap('cniMs')` records the ms since the last lap
// (or the start). bench/pod-start.ts reads these fields back from vmlet's log.
export interface Phases {
  /** Records the time since the previous lap under `key`. */
  lap: (key: string) => void;
  /** Every lap so far, plus `ms`: the time since the start. */
  fields: () => Record<string, number>;
}

export function phases(start = performance.now()): Phases {
  const laps: Record<string, number> = {};
  let mark = start;
  return {
    lap: (key) => {
      const now = performance.now();
      laps[key] = Math.round(now - mark);
      mark = now;
    },
    fields: () => ({ ms: Math.round(performance.now() - start), ...laps }),
  };
}
