// Signal names (an image's StopSignal: "SIGTERM", "TERM", "15") → numbers on Linux x86_64.
const SIGNALS: Record<string, number> = {
  HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10, SEGV: 11, USR2: 12,
  PIPE: 13, ALRM: 14, TERM: 15, STKFLT: 16, CHLD: 17, CONT: 18, STOP: 19, TSTP: 20, TTIN: 21, TTOU: 22,
  URG: 23, XCPU: 24, XFSZ: 25, VTALRM: 26, PROF: 27, WINCH: 28, IO: 29, PWR: 30, SYS: 31,
};

/** undefined for an empty or unknown name (the caller falls back to SIGTERM, as containerd does). */
export function signalNumber(name: string | undefined): number | undefined {
  if (!name) return undefined;
  const n = name.trim().toUpperCase().replace(/^SIG/, '');
  if (/^\d+$/.test(n)) return Number(n) >= 1 && Number(n) <= 64 ? Number(n) : undefined;
  return SIGNALS[n];
}
