// One collection pass of the mulesoft-audit component inside Node.js: the component transpiled
// by jco (`npm run transpile`), `wasi:http` from @bytecodealliance/preview2-shim, and the object
// store from ./object-store.js on a local directory. Configured by the same environment variables
// as every host (the component's `configure` reads them), plus MULESOFT_AUDIT_DIR; prints the
// component's report: errors on stderr, the JSON summary as the last line of stdout.
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
import { collector } from './generated/collector.js';

// Every setting, default, check and message is the component's (`configure`); so is the report
// and its exit code (`reportOf`). This file only reads files and prints.

// The content of the file CLIENT_SECRET_FILE names, read here: the component reads no files.
function secretFile() {
  const path = process.env.CLIENT_SECRET_FILE?.trim();
  if (!path) return undefined;
  try {
    return { tag: 'ok', val: readFileSync(path, 'utf8') };
  } catch (e) {
    return { tag: 'err', val: e.code ?? e.message };
  }
}

// A `run-error` arrives as a ComponentError whose payload is the WIT record; anything else (a
// trap) is a bug and is thrown on.
function outcome(call) {
  try {
    return { tag: 'ok', val: call() };
  } catch (e) {
    if (e?.payload === undefined) throw e;
    return { tag: 'err', val: e.payload };
  }
}

const failed = (failure) => ({ tag: 'err', val: { failures: [failure], completed: [] } });

function print(report) {
  for (const line of report.lines) console.error(line);
  console.log(report.json);
  return report.exitCode;
}

function main() {
  const command = process.argv[2] ?? 'run';
  if (command !== 'run' && command !== 'check') {
    return print(collector.reportOf(failed({ kind: 'config', message: `unknown command \`${command}\`: use run or check` })));
  }
  const configured = outcome(() => collector.configure(Object.entries(process.env), secretFile()));
  if (configured.tag === 'err') return print(collector.reportOf(failed(configured.val)));
  const { config } = configured.val;
  limitFirstByteWait(config.httpTimeoutMs * 1_000_000n);
  const dir = process.env.MULESOFT_AUDIT_DIR?.trim() || './mulesoft-audit-data';
  try {
    useDirectory(dir);
  } catch (e) {
    const message = `MULESOFT_AUDIT_DIR \`${dir}\` cannot be used (${e.code ?? e.message}): create it, or point to a writable directory`;
    return print(collector.reportOf(failed({ kind: 'config', message })));
  }
  if (command === 'check') {
    const checked = outcome(() => collector.check(config));
    if (checked.tag === 'err') return print(collector.reportOf(checked));
    for (const line of checked.val) console.log(`ok: ${line}`);
    return 0;
  }
  return print(collector.reportOf(outcome(() => collector.run(config))));
}

process.exitCode = main();
