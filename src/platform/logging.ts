import pino, { type Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'meridian' }, redact: ['req.headers.authorization', 'password', 'token'] });
}
