/**
 * The print: one line per fired task on the worker's stdout, one write per batch. Characters
 * that could end a line, forge another, or drive a terminal (C0/C1 controls, DEL, Unicode
 * line and paragraph separators, bidi overrides, lone surrogates) are escaped, and so is the
 * backslash, so every printed line maps back to exactly one message.
 */
import type { Writable } from 'node:stream';

const UNSAFE =
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\\]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const NAMED: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

export function escapeMessage(message: string): string {
  return message.replace(UNSAFE, (c) => NAMED[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export interface Printer {
  /** Writes one line per message in a single write, resolving once the stream took it. */
  print(messages: string[]): Promise<void>;
}

export function createPrinter(out: Writable): Printer {
  return {
    print(messages) {
      if (messages.length === 0) return Promise.resolve();
      const text = messages.map((m) => `${escapeMessage(m)}\n`).join('');
      return new Promise((resolve, reject) => out.write(text, (error) => (error ? reject(error) : resolve())));
    },
  };
}
