// One collection pass of the mulesoft-audit component inside Node.js: the component transpiled
// by jco (`npm run transpile`), `wasi:http` from @bytecodealliance/preview2-shim, and the object
// store from ./object-store.js on a local directory. Configured by the same environment variables
// as the `mulesoft-audit-command` artifact, plus the host's MULESOFT_AUDIT_HTTP_TIMEOUT ceiling
// (./outgoing-handler.js); prints a JSON summary as its last line of stdout.
//
//   MULE_ORG_ID=… CLIENT_ID=… CLIENT_SECRET=… MULE_REGION=eu MULESOFT_AUDIT_DIR=./out node collect.js
//
// `node collect.js check` verifies the settings instead (token, retention, one entry per
// organization) and writes nothing.
//
// Exit codes: 0 done, 1 failed (retryable later), 2 a setting or credential to fix.

import { readFileSync } from 'node:fs';
import { useDirectory } from './object-store.js';
import { limitFirstByteWait } from './outgoing-handler.js';

const env = (name) => process.env[name]?.trim() || undefined;

function number(name, fallback) {
  const value = env(name);
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new Error(`${name} \`${value}\` is not a whole number`);
  return Number(value);
}

// CLIENT_SECRET_FILE (a mounted secret) or CLIENT_SECRET, not both, as the other hosts; never printed.
function secret() {
  const file = env('CLIENT_SECRET_FILE');
  if (file === undefined) return env('CLIENT_SECRET') ?? '';
  if (env('CLIENT_SECRET') !== undefined) {
    throw new Error('both CLIENT_SECRET and CLIENT_SECRET_FILE are set: set only one');
  }
  try {
    return readFileSync(file, 'utf8').replace(/[\r\n]+$/, '');
  } catch (e) {
    throw new Error(`CLIENT_SECRET_FILE \`${file}\` cannot be read (${e.code ?? e.message})`);
  }
}

// `500ms`, `30s`, `2m`: the forms of the wasmtime host's MULESOFT_AUDIT_HTTP_TIMEOUT.
function durationNs(name, fallback) {
  const value = env(name) ?? fallback;
  const m = /^(\d+)\s*(ms|s|m)$/.exec(value);
  if (!m || /^0+$/.test(m[1])) throw new Error(`${name} \`${value}\` is not a duration such as 500ms, 30s or 2m`);
  return BigInt(m[1]) * { ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n }[m[2]];
}

function config() {
  const baseUrl = env('MULE_BASE_URL');
  const region = env('MULE_REGION') ?? 'us';
  if (!['us', 'eu', 'gov', 'ca', 'jp'].includes(region)) {
    throw new Error(`MULE_REGION \`${region}\` is not one of us, eu, gov, ca, jp`);
  }
  const rpm = env('MULESOFT_AUDIT_RPM');
  const since = env('MULESOFT_AUDIT_SINCE_MS');
  // Field names are the WIT record's in camelCase; u64/s64 are BigInts. The component checks
  // every value and answers a `config` failure naming the setting.
  return {
    orgIds: (env('MULE_ORG_ID') ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    discoverChildren: env('MULE_DISCOVER_CHILDREN') === 'true',
    endpoint: baseUrl ? { tag: 'base-url', val: baseUrl } : { tag: 'plane', val: region },
    clientId: env('CLIENT_ID') ?? '',
    clientSecret: secret(),
    lookbackSeconds: BigInt(number('MULESOFT_AUDIT_LOOKBACK_SECONDS', 86_400)),
    sinceMs: since === undefined ? undefined : BigInt(number('MULESOFT_AUDIT_SINCE_MS', 0)),
    lagSeconds: BigInt(number('MULESOFT_AUDIT_LAG_SECONDS', 60)),
    overlapSeconds: BigInt(number('MULESOFT_AUDIT_OVERLAP_SECONDS', 600)),
    pageSize: number('MULESOFT_AUDIT_PAGE_SIZE', 200),
    maxPages: number('MULESOFT_AUDIT_MAX_PAGES', 100_000),
    objectMaxBytes: BigInt(number('MULESOFT_AUDIT_OBJECT_KIB', 32 * 1024)) * 1024n,
    keyPrefix: env('MULESOFT_AUDIT_KEY_PREFIX') ?? 'logs/',
    statePrefix: env('MULESOFT_AUDIT_STATE_PREFIX') ?? 'state/',
    requestsPerMinute: rpm === undefined ? undefined : number('MULESOFT_AUDIT_RPM', 0),
    maxAttempts: number('MULESOFT_AUDIT_MAX_ATTEMPTS', 6),
    paging: env('MULESOFT_AUDIT_PAGING') ?? 'cursor',
    shardIndex: number('MULESOFT_AUDIT_SHARD_INDEX', 0),
    shardCount: number('MULESOFT_AUDIT_SHARD_COUNT', 1),
    concurrency: number('MULESOFT_AUDIT_CONCURRENCY', 4),
  };
}

// The same summary shape as the other hosts print (snake_case, numbers as JSON numbers).
const orgReport = (o) => ({
  org_id: o.orgId,
  window_start: o.windowStart,
  window_end: o.windowEnd,
  entries_written: Number(o.entriesWritten),
  duplicates_skipped: Number(o.duplicatesSkipped),
  objects: o.objects,
  requests: o.requests,
  retries: o.retries,
  throttled_waits: o.throttledWaits,
  bytes_in: Number(o.bytesIn),
  bytes_out: Number(o.bytesOut),
});
const failureReport = (f) => ({ org_id: f.orgId ?? null, kind: f.kind, message: f.message });
const NEEDS_A_PERSON = new Set(['config', 'unauthorized', 'forbidden', 'denied']);

function finish(status, orgs, failures) {
  for (const f of failures) {
    console.error(`error: ${f.org_id ? `organization ${f.org_id}: ` : ''}${f.message}`);
  }
  console.log(JSON.stringify({ status, orgs, failures }));
  if (failures.length === 0) return 0;
  return failures.some((f) => NEEDS_A_PERSON.has(f.kind)) ? 2 : 1;
}

async function main() {
  const command = process.argv[2] ?? 'run';
  if (command !== 'run' && command !== 'check') {
    return finish('failed', [], [{ org_id: null, kind: 'config', message: `unknown command \`${command}\`: use run or check` }]);
  }
  let settings;
  try {
    settings = config();
    limitFirstByteWait(durationNs('MULESOFT_AUDIT_HTTP_TIMEOUT', '60s'));
    useDirectory(env('MULESOFT_AUDIT_DIR') ?? './mulesoft-audit-data');
  } catch (e) {
    return finish('failed', [], [{ org_id: null, kind: 'config', message: e.message }]);
  }
  // Imported only now, so a setting error is reported without loading the component.
  const { collector } = await import('./generated/collector.js');
  try {
    if (command === 'check') {
      for (const line of collector.check(settings)) console.log(`ok: ${line}`);
      return 0;
    }
    const summary = collector.run(settings);
    return finish('ok', summary.orgs.map(orgReport), []);
  } catch (e) {
    // A `run-error` arrives as a ComponentError whose payload is the WIT record; anything else
    // (a trap) is a bug and is thrown on.
    if (e?.payload === undefined) throw e;
    return finish('failed', e.payload.completed.map(orgReport), e.payload.failures.map(failureReport));
  }
}

process.exitCode = await main();
