// The first SIGTERM or SIGINT of a long-running command (`vmlet serve`, `vmlet vnc`).
import type { Logger } from '../log.js';

/**
 * Resolves on the first SIGTERM or SIGINT. Its listeners stay for the whole run: with `once`,
 * the listener is gone when the signal is handled, and execa's signal-exit (loaded while a child
 * it cleans up runs) then sees only its own listeners and raises the signal again, ending the
 * process by its default action in the middle of the stop. A later signal is logged, not fatal.
 */
export function stopSignal(log: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let first: NodeJS.Signals | undefined;
    const on = (signal: NodeJS.Signals) => {
      if (first) log.info({ signal, first }, 'already stopping');
      else {
        first = signal;
        resolve(signal);
      }
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}
