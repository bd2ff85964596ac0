/**
 * Faults for the chaos suite, preloaded into a worker or API process with --import. CHAOS_FAULT
 * names them (comma-separated). The scripts are rewritten as they are read from disk, so
 * the program itself carries no switch for them.
 *
 *   non-idempotent-complete  complete.lua commits (and publishes) a task that is already FIRED
 *   worker-clock             promotion (firing.lua) takes "now" from this worker's clock (CLOCK_OFFSET_MS)
 *   ignore-cancel            claim (firing.lua) fires a task that was cancelled; and take.lua, and
 *                            claim.lua given `unread`, read (so claim) nothing, so every task
 *                            waits in a stream a while, where a cancel can reach it (reading
 *                            and claiming in one call leaves a cancel no window)
 *   poison                   printing a batch that holds a message containing POISON fails
 *   no-gap-check             complete.lua's published batch names no log entry before it ('0-0'),
 *                            so a reader of the channel cannot see that a message was lost
 *   drop-some-publishes      complete.lua publishes no message for a batch whose first event's
 *                            millisecond is a multiple of 4 (about a quarter): messages lost
 *                            while the subscriber's connection stays up
 *   no-write-deadline        schedule.lua runs past its deadline: a write its caller was told
 *                            failed can still take effect when Redis reaches it late
 *   overwrite-schedule       schedule.lua stores a task again that is already there (its call
 *                            sent again, or its idempotency key reused), whatever its state
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const faults = new Set((process.env.CHAOS_FAULT ?? '').split(',').filter(Boolean));
const DUE_BY = "redis.call('ZRANGE', schedule, '-inf', now,";

/** Fault -> [script file, rewrite] pairs. */
const rewrites = {
  'non-idempotent-complete': [['complete.lua', (lua) => lua.replace('local value = records[n]', 'local value = records[n] or recordPrefix(worker, attempt)')]],
  'no-gap-check': [['complete.lua', (lua) => lua.replace(`',"prev":"' .. prev ..`, `',"prev":"0-0' ..`)]],
  'drop-some-publishes': [['complete.lua', (lua) => lua.replace(/( {2}publish\(channel,[^\n]*)/, "  if tonumber(string.match(last, '^(%d+)')) % 4 ~= 0 then\n$1\n  end")]],
  'no-write-deadline': [['schedule.lua', (lua) => lua.replace("if now > tonumber(ARGV[1]) then return {'EXPIRED', now} end", '')]],
  'overwrite-schedule': [['schedule.lua', (lua) => lua.replace('if existing[i] then', 'if false then')]],
  'worker-clock': [['firing.lua', (lua) => lua.replace(DUE_BY, DUE_BY.replace('now,', `now + (${Number(process.env.CLOCK_OFFSET_MS ?? 0)}),`))]],
  'ignore-cancel': [
    ['firing.lua', (lua) => lua.replace("status ~= 'DUE' and status ~= 'FIRING')", "status ~= 'DUE' and status ~= 'FIRING' and status ~= 'CANCELLED')")],
    ['firing.lua', (lua) => lua.replace("local read = redis.call('XREADGROUP'", "local read = false and redis.call('XREADGROUP'")],
  ],
};

const readFileSync = fs.readFileSync;
fs.readFileSync = function patchedReadFileSync(path, ...rest) {
  const content = readFileSync.call(this, path, ...rest);
  if (typeof content !== 'string') return content;
  let result = content;
  for (const fault of faults) {
    for (const [file, rewrite] of rewrites[fault] ?? []) {
      if (!String(path).endsWith(`/${file}`)) continue;
      const before = result;
      result = rewrite(result);
      if (result === before) throw new Error(`chaos fault ${fault}: ${file} no longer has the text it rewrites`);
    }
  }
  return result;
};
syncBuiltinESMExports();

if (faults.has('poison')) {
  // The print of a batch holding the poison fails, as a full disk or a closed pipe would.
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk, ...rest) => {
    if (!String(chunk).includes('POISON')) return write(chunk, ...rest);
    const callback = rest.find((arg) => typeof arg === 'function');
    const error = Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
    if (callback) process.nextTick(callback, error);
    return false;
  };
}
