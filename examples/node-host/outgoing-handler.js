// `wasi:http/outgoing-handler` for the collector component: preview2-shim's, with a host ceiling
// on the wait for a reply, as the wasmtime host has (`MULESOFT_AUDIT_HTTP_TIMEOUT`). The component
// asks for its own timeouts (10 s to connect, 60 s to the first byte); a host may only lower them.

import { outgoingHandler, types } from '@bytecodealliance/preview2-shim/http';

// Set from the component's `configure` (MULESOFT_AUDIT_HTTP_TIMEOUT, and its default) before
// the first request.
let firstByteCeilingNs;

/** Sets the ceiling, in nanoseconds, on every request's wait for the reply's first byte. */
export function limitFirstByteWait(ns) {
  firstByteCeilingNs = ns;
}

export function handle(request, options) {
  const opts = options ?? new types.RequestOptions();
  const asked = opts.firstByteTimeout();
  const firstByte = asked === undefined || asked > firstByteCeilingNs ? firstByteCeilingNs : asked;
  if (firstByte === undefined) return outgoingHandler.handle(request, opts);
  opts.setFirstByteTimeout(firstByte);
  // preview2-shim 0.26 applies `connect-timeout` as the socket's idle timeout until the reply's
  // head arrives, and `first-byte-timeout` only to the body after it. Left as asked, the 10 s
  // connect timeout would cut off every reply slower than that; the head gets the first-byte
  // budget instead, which also bounds the connect.
  opts.setConnectTimeout(firstByte);
  return outgoingHandler.handle(request, opts);
}
