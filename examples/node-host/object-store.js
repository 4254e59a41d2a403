// The `mulesoft:audit/object-store` interface on the local filesystem, for the collector
// component transpiled by jco. Keys are paths under one root directory.
//
// jco's calling convention for imports: arguments and results are plain JS values (`u64` is a
// BigInt, `list<u8>` a Uint8Array, `option` undefined or the value); an `err` is returned by
// throwing the `store-error` variant itself, `{ tag, val }`. Any other exception traps the
// component, so every filesystem failure is turned into a variant here.

import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

let root;
// The swap itself takes milliseconds: a lock held longer than this belongs to a stuck writer.
let lockWaitMs = 10_000;
// A lock file older than this was left by a killed process.
const STALE_LOCK_MS = 60_000;

/** Chooses the directory that holds the objects; call before running the collector. */
export function useDirectory(dir, { lockWait = lockWaitMs } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  root = path.resolve(dir);
  lockWaitMs = lockWait;
}

// A generation is derived from the bytes, so any change of content is seen and needs no
// bookkeeping of its own (never 0: 0 means "no object" in `write-if-generation`).
function generationOf(data) {
  return createHash('sha256').update(data).digest().readBigUInt64BE(0) | 1n;
}

function pathOf(key) {
  if (!root) throw { tag: 'other', val: 'the object store has no directory: call useDirectory first' };
  if (key === '' || key.startsWith('/') || key.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw { tag: 'other', val: `invalid key \`${key}\`` };
  }
  return path.join(root, key);
}

function storeError(what, e) {
  const message = `${what}: ${e.message}`;
  if (e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS') return { tag: 'denied', val: message };
  if (e.code === 'ENOSPC' || e.code === 'EMFILE' || e.code === 'EAGAIN') return { tag: 'unavailable', val: message };
  return { tag: 'other', val: message };
}

// Writes `data` to a fresh temporary file beside `file` and returns its name, flushed to disk, so
// that whatever takes its place (link or rename) is the whole object or nothing.
function writeTemporary(file, data) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = fs.openSync(temporary, 'wx');
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return temporary;
}

// A create here is one local step (a link), so this store takes no lease on a name: the
// collector then claims a missing object's name at once, and there is no deadline to keep.
export function leaseMs() {
  return 0n;
}

export function create(key, data, _contentType, _deadlineMs) {
  const file = pathOf(key);
  let temporary;
  try {
    temporary = writeTemporary(file, data);
    // link(2) fails when the name is taken: an atomic create-only, even between processes.
    fs.linkSync(temporary, file);
  } catch (e) {
    if (e.code === 'EEXIST') throw { tag: 'already-exists' };
    throw storeError(`creating ${key}`, e);
  } finally {
    if (temporary) fs.rmSync(temporary, { force: true });
  }
  return generationOf(data);
}

export function read(key) {
  const file = pathOf(key);
  try {
    const data = fs.readFileSync(file);
    return { data: new Uint8Array(data), generation: generationOf(data) };
  } catch (e) {
    if (e.code === 'ENOENT') return undefined;
    throw storeError(`reading ${key}`, e);
  }
}

const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

// Takes the lock file beside an object with O_EXCL, waiting while another process holds it (the
// component calls imports synchronously, hence the blocking pause). A held lock is not a changed
// object: reporting it as a mismatch would fail a writer whose swap would have succeeded. The lock
// holds its owner's token, so that only the owner releases it and breaking a stale lock can tell
// it from a fresh one. Returns the token.
function takeLock(key, lock) {
  const token = randomBytes(8).toString('hex');
  const started = Date.now();
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    try {
      const fd = fs.openSync(lock, 'wx');
      try {
        fs.writeSync(fd, token);
      } finally {
        fs.closeSync(fd);
      }
      return token;
    } catch (e) {
      if (e.code !== 'EEXIST') throw storeError(`locking ${key}`, e);
    }
    try {
      const held = fs.statSync(lock, { throwIfNoEntry: false });
      if (held && Date.now() - held.mtimeMs > STALE_LOCK_MS) {
        breakStale(lock, fs.readFileSync(lock, 'utf8'));
        continue;
      }
    } catch (e) {
      if (e.code === 'ENOENT') continue;
      throw storeError(`locking ${key}`, e);
    }
    if (Date.now() - started >= lockWaitMs) {
      const val = `${lock} has been held by another writer for ${lockWaitMs} ms; if no other collector runs, delete it`;
      throw { tag: 'unavailable', val };
    }
    pause(wait);
  }
}

// Removes the lock whose token is `stale`, and no other: the lock is moved aside (only one process
// can move it); if what was moved is another, fresh lock, it is put back, create-only.
export function breakStale(lock, stale) {
  const aside = `${lock}.${randomBytes(6).toString('hex')}.broken`;
  try {
    fs.renameSync(lock, aside);
  } catch {
    return false;
  }
  const broken = fs.readFileSync(aside, 'utf8') === stale;
  if (!broken) {
    try {
      fs.linkSync(aside, lock);
    } catch {
      // Another lock took its place meanwhile: that one stands.
    }
  }
  fs.rmSync(aside, { force: true });
  return broken;
}

// Releases a lock only while it still holds this writer's token (a lock broken as stale and taken
// by another writer is theirs).
export function releaseLock(lock, token) {
  try {
    if (fs.readFileSync(lock, 'utf8') === token) fs.rmSync(lock, { force: true });
  } catch {
    // Already gone.
  }
}

// Compare-and-swap under the lock: read the current generation, replace only if it is `expected`.
export function writeIfGeneration(key, data, _contentType, expected) {
  const file = pathOf(key);
  const lock = `${file}.lock`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
  } catch (e) {
    throw storeError(`creating the folder of ${key}`, e);
  }
  const token = takeLock(key, lock);
  try {
    const current = read(key);
    if ((current?.generation ?? 0n) !== expected) throw { tag: 'generation-mismatch' };
    const temporary = writeTemporary(file, data);
    try {
      fs.renameSync(temporary, file);
    } catch (e) {
      fs.rmSync(temporary, { force: true });
      throw storeError(`replacing ${key}`, e);
    }
    return generationOf(data);
  } finally {
    releaseLock(lock, token);
  }
}

/**
 * The keys under `prefix` whose last segment begins with `name`: files under the folder it
 * names (temporary and lock files are no objects), sorted, at most `limit`. A directory cannot
 * tell which files were removed.
 */
export function find(prefix, name, limit) {
  if (!root) throw { tag: 'other', val: 'the object store has no directory: call useDirectory first' };
  const folder = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
  const live = [];
  const walk = (relative) => {
    let entries;
    try {
      entries = fs.readdirSync(relative ? pathOf(relative) : root, { withFileTypes: true });
    } catch (e) {
      if (e.code === 'ENOENT') return;
      throw storeError(`listing ${relative}`, e);
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.') || entry.name.endsWith('.lock')) continue;
      const key = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(key);
      else if (key.startsWith(prefix) && entry.name.startsWith(name)) live.push(key);
    }
  };
  walk(folder);
  live.sort();
  return { live: live.slice(0, limit), deleted: undefined };
}

/**
 * A directory keeps no record of removed files: a shipper that uploads and removes them leaves a
 * missing file that may have been created, so absence proves nothing.
 */
export function presence(key) {
  try {
    fs.statSync(pathOf(key));
    return 'present';
  } catch (e) {
    if (e.code === 'ENOENT') return 'unknown';
    throw storeError(`looking up ${key}`, e);
  }
}
