/**
 * The DateTime scalar: an ISO-8601 / RFC 3339 date-time with an explicit offset in, UTC out.
 * Strict on purpose: a time without an offset means a different instant on every server,
 * and JavaScript's Date would silently roll an impossible date (Feb 30) into another one.
 */
import { Kind } from 'graphql';
import { builder } from './builder.js';
import { badUserInput } from './errors.js';

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$/;
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
/** The first and last instants whose UTC year has four digits. */
const FIRST_INSTANT = new Date('0000-01-01T00:00:00.000Z').getTime();
const LAST_INSTANT = new Date('9999-12-31T23:59:59.999Z').getTime();
const EXAMPLE = 'like 2026-11-07T22:49:00+02:00 or 2026-11-07T20:49:00Z';

const daysIn = (year: number, month: number) =>
  month === 2 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;

/**
 * Milliseconds since the epoch for an ISO-8601 date-time with an offset; throws
 * BAD_USER_INPUT naming what is wrong. Fractions finer than a millisecond are truncated.
 */
export function parseDateTime(value: unknown): number {
  if (typeof value !== 'string') throw badUserInput(`A DateTime must be a string ${EXAMPLE}.`);
  const shown = JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  if (DATE_ONLY.test(value)) throw badUserInput(`The time ${shown} is ambiguous: it has no time of day and no offset; write it ${EXAMPLE}.`);
  const match = DATE_TIME.exec(value);
  if (!match) throw badUserInput(`The time ${shown} is not an ISO-8601 date-time; write it ${EXAMPLE}. Years have four digits.`);
  const [, y, mo, d, h, mi, s = '0', fraction = '', zulu, sign, oh, om] = match;
  if (!zulu && !sign) throw badUserInput(`The time ${shown} is ambiguous: it has no offset; add Z for UTC or one like +02:00.`);
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const [hour, minute, second] = [Number(h), Number(mi), Number(s)];
  if (month < 1 || month > 12) throw badUserInput(`The time ${shown} has no month ${mo}.`);
  if (day < 1 || day > daysIn(year, month)) throw badUserInput(`The time ${shown} is not a date: ${y}-${mo} has ${daysIn(year, month)} days.`);
  if (hour > 23) throw badUserInput(`The time ${shown} has hour ${h}; hours run 00 to 23.`);
  if (minute > 59) throw badUserInput(`The time ${shown} has minute ${mi}; minutes run 00 to 59.`);
  if (second === 60) throw badUserInput(`The time ${shown} is a leap second; the scheduler keeps POSIX time, which has none: use :59 or the next minute.`);
  if (second > 59) throw badUserInput(`The time ${shown} has second ${s}; seconds run 00 to 59.`);
  let offsetMinutes = 0;
  if (sign) {
    const [offsetHours, offsetMins] = [Number(oh), Number(om)];
    if (offsetHours > 23 || offsetMins > 59) throw badUserInput(`The time ${shown} has an impossible offset.`);
    // RFC 3339: -00:00 means "the offset is unknown", which is no offset at all.
    if (sign === '-' && offsetHours === 0 && offsetMins === 0) throw badUserInput(`The time ${shown} is ambiguous: -00:00 means an unknown offset; use Z for UTC.`);
    offsetMinutes = (sign === '+' ? 1 : -1) * (offsetHours * 60 + offsetMins);
  }
  // setUTCFullYear takes the year literally (Date.UTC would read 0-99 as 1900-1999).
  const local = new Date(0);
  local.setUTCFullYear(year, month - 1, day);
  local.setUTCHours(hour, minute, second, Number(fraction.padEnd(3, '0').slice(0, 3)));
  const result = local.getTime() - offsetMinutes * 60_000;
  // The instant itself, in UTC, must have a year of four digits: 0000-01-01T00:00:00+14:00 is
  // in year -1, which the answer could not write as this scalar accepts it.
  if (!Number.isSafeInteger(result) || result < FIRST_INSTANT || result > LAST_INSTANT) throw badUserInput(`The time ${shown} is out of range: years run 0000 to 9999, in UTC.`);
  return result;
}

/** The ISO-8601 form in UTC with milliseconds, e.g. 2026-11-07T20:49:00.000Z. */
export function formatDateTime(ms: number): string {
  return new Date(ms).toISOString();
}

export const DateTime = builder.scalarType('DateTime', {
  description:
    'An instant, as an ISO-8601 date-time with an offset (2026-11-07T22:49:00+02:00 or 2026-11-07T20:49:00Z). Returned in UTC with milliseconds. A time without an offset is refused as ambiguous; there are no leap seconds.',
  specifiedByURL: 'https://datatracker.ietf.org/doc/html/rfc3339',
  parseValue: parseDateTime,
  parseLiteral: (node) => {
    if (node.kind !== Kind.STRING) throw badUserInput(`A DateTime must be a string ${EXAMPLE}.`);
    return parseDateTime(node.value);
  },
  serialize: (value) => formatDateTime(value as number),
});
