import type { Pos } from './types.js';

/** Every problem with a config file: the message starts with FILE:LINE:COL so editors can jump to it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** The message without the position prefix. */
  readonly reason: string;

  /** line 0 / col 0 means the problem is with the whole file (unreadable, too large). */
  constructor(file: string, line: number, col: number, reason: string) {
    super(line > 0 ? `${file}:${line}:${col}: ${reason}` : `${file}: ${reason}`);
    this.file = file;
    this.line = line;
    this.col = col;
    this.reason = reason;
  }
}

export function errorAt(pos: Pos, reason: string): ConfigError {
  return new ConfigError(pos.file, pos.line, pos.col, reason);
}

export function posText(pos: Pos): string {
  return `${pos.file}:${pos.line}:${pos.col}`;
}

/** Quotes user text in messages; JSON escaping keeps control characters visible. */
export function q(text: string): string {
  return JSON.stringify(text);
}

/** "a", "a or b", "a, b or c" */
export function oneOf(values: readonly string[]): string {
  if (values.length <= 1) return values.join('');
  return `${values.slice(0, -1).join(', ')} or ${values[values.length - 1]}`;
}
