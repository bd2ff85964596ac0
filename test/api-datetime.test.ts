/** The DateTime scalar's parser: what it accepts (and the instant it means) and what it refuses. */
import { describe, expect, it } from 'vitest';
import { GraphQLError } from 'graphql';
import { formatDateTime, parseDateTime } from '../src/schema/datetime.js';

describe('DateTime', () => {
  it.each([
    ['2026-11-07T22:49:00+02:00', '2026-11-07T20:49:00.000Z'],
    ['2026-11-07T20:49:00Z', '2026-11-07T20:49:00.000Z'],
    ['2026-11-07t20:49:00z', '2026-11-07T20:49:00.000Z'],
    ['2026-11-07 20:49:00Z', '2026-11-07T20:49:00.000Z'],
    ['2026-11-07T20:49Z', '2026-11-07T20:49:00.000Z'],
    ['2026-11-07T22:49:00+0200', '2026-11-07T20:49:00.000Z'],
    ['2026-11-07T12:19:00-08:30', '2026-11-07T20:49:00.000Z'],
    ['2026-11-07T20:49:00.5Z', '2026-11-07T20:49:00.500Z'],
    ['2026-11-07T20:49:00,25Z', '2026-11-07T20:49:00.250Z'],
    ['2026-11-07T20:49:00.123999999Z', '2026-11-07T20:49:00.123Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
    ['2000-02-29T00:00:00Z', '2000-02-29T00:00:00.000Z'],
    ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
    ['0099-12-31T23:00:00-02:00', '0100-01-01T01:00:00.000Z'],
    ['9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'],
  ])('reads %s as %s', (input, utc) => {
    expect(formatDateTime(parseDateTime(input))).toBe(utc);
  });

  it.each([
    ['2026-11-07T22:49:00', /ambiguous.*no offset/],
    ['2026-11-07', /ambiguous/],
    ['2026-11-07T22:49:00-00:00', /unknown offset/],
    ['2026-02-29T00:00:00Z', /not a date/],
    ['1900-02-29T00:00:00Z', /not a date/],
    ['2026-04-31T00:00:00Z', /not a date/],
    ['2026-13-01T00:00:00Z', /no month/],
    ['2026-00-10T00:00:00Z', /no month/],
    ['2026-01-00T00:00:00Z', /not a date/],
    ['2026-01-01T24:00:00Z', /hour/],
    ['2026-01-01T23:60:00Z', /minute/],
    ['2016-12-31T23:59:60Z', /leap second/],
    ['2026-01-01T10:00:61Z', /second/],
    ['2026-01-01T10:00:00+24:00', /offset/],
    ['275760-09-13T00:00:00Z', /not an ISO-8601/],
    ['+275760-09-13T00:00:00Z', /not an ISO-8601/],
    ['2026-01-01T10:00:00.1234567890Z', /not an ISO-8601/],
    ['1731000000000', /not an ISO-8601/],
    ['next tuesday', /not an ISO-8601/],
    ['', /not an ISO-8601/],
    ['2026-11-07T22:49:00+02:00\n', /not an ISO-8601/],
  ])('refuses %j', (input, message) => {
    expect(() => parseDateTime(input)).toThrow(message);
    try {
      parseDateTime(input);
    } catch (error) {
      expect(error).toBeInstanceOf(GraphQLError);
      expect((error as GraphQLError).extensions.code).toBe('BAD_USER_INPUT');
    }
  });

  it('refuses what is not a string', () => {
    for (const value of [1731000000000, null, {}, ['2026-11-07T22:49:00Z']]) expect(() => parseDateTime(value)).toThrow(/must be a string/);
  });
});
