/**
 * A feed cursor: the position of a subscriber in every partition's fired log (the entry id
 * of the last event it was given there), so a resume is exact across partitions.
 */
import { SchedulerError } from './errors.js';

const CURSOR_VERSION = 'f1';
const SEQ_PATTERN = /^\d{1,20}-\d{1,20}$/;

export function encodeCursor(position: readonly string[]): string {
  return `${CURSOR_VERSION}.${Buffer.from(position.join(',')).toString('base64url')}`;
}

export const badCursor = (why: string) =>
  new SchedulerError('BAD_USER_INPUT', `The cursor is not valid: ${why}. Use a cursor from a taskFired event, or none.`, { reason: 'BAD_CURSOR' });

/** The per-partition positions a cursor holds; throws BAD_USER_INPUT when it is not one of ours. */
export function decodeCursor(cursor: string, partitions: number): string[] {
  const [version, body, extra] = cursor.split('.');
  // A position takes at most 41 characters, 56 once in base64: anything longer is not ours.
  if (version !== CURSOR_VERSION || body === undefined || extra !== undefined || body.length > partitions * 56 || !/^[A-Za-z0-9_-]+$/.test(body)) {
    throw badCursor('unknown format');
  }
  const position = Buffer.from(body, 'base64url').toString('utf8').split(',');
  if (position.length !== partitions) {
    throw badCursor(`it was made for ${position.length} partitions, this deployment has ${partitions}`);
  }
  if (!position.every((seq) => SEQ_PATTERN.test(seq))) throw badCursor('unknown format');
  return position;
}
