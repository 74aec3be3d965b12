// Structured logs: one JSON line per event (pino). Child loggers carry pod/container ids.
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

export function createLogger(level: LogLevel, dest: NodeJS.WritableStream | number = 2): Logger {
  const stream = typeof dest === 'number' ? pino.destination({ fd: dest, sync: true }) : dest;
  return pino(
    {
      level,
      base: { name: 'vmlet' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Registry credentials may travel in requests; never let them reach a log line.
      redact: { paths: ['auth', '*.auth', '*.password', '*.identity_token', '*.registry_token'], censor: '[redacted]' },
    },
    stream,
  );
}
