// What the end-to-end tests talk to: a running gateway named by the environment. The pytest
// harness tests/e2e/test_node_client.py starts one (demo provider, plus loopback fake upstreams
// behind the RATE_LIMITED and SLOW models) and runs `node --test` with these variables set;
// `make test-node` does that. Without them the tests fail, saying so, rather than skip.

import { randomUUID } from 'node:crypto';
import { SwitchboardClient } from '../index.js';

/** @import { ClientOptions } from '../lib/rpc.js' */

export const DEMO_MODEL = 'demo/echo';

/** @param {string} name */
export function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: these tests need a running gateway; run them with ` +
        '`make test-node` (tests/e2e/test_node_client.py starts one and sets the variables)',
    );
  }
  return value;
}

/** host:port of the gateway's gRPC listener. */
export const target = () => env('SWITCHBOARD_GRPC_TARGET');

/**
 * A client with `key` (default: the unlimited test key); closed after the test by `t.after`.
 * @param {import('node:test').TestContext} t
 * @param {string} [key]
 * @param {ClientOptions} [options]
 */
export function connect(t, key = env('SWITCHBOARD_API_KEY'), options = { timeoutMs: 30_000 }) {
  const client = new SwitchboardClient(target(), key, options);
  t.after(() => client.close());
  return client;
}

/** A client with the master key (AdminService). @param {import('node:test').TestContext} t */
export function connectAdmin(t) {
  return connect(t, env('SWITCHBOARD_MASTER_KEY'));
}

/** A short unique text, so a test's requests are told apart. @param {string} prefix */
export function unique(prefix) {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/**
 * Runs `fn`, which must reject; returns what it rejected with.
 * @param {() => Promise<unknown>} fn
 * @returns {Promise<any>}
 */
export async function rejection(fn) {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/**
 * Everything an async iterable yields.
 * @template T
 * @param {AsyncIterable<T>} iterable
 */
export async function collect(iterable) {
  /** @type {T[]} */
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** A JSON schema for a tool taking one required string `city`. */
export const CITY_TOOL = {
  name: 'weather',
  description: 'Current weather',
  parameters: {
    type: 'object',
    properties: { city: { type: 'string' } },
    required: ['city'],
  },
};
