// An upstream's rate limit through the gateway: the loopback fake OpenAI behind
// SWITCHBOARD_TEST_RATE_LIMITED_MODEL answers every request 429 with `retry-after-ms: 7250`,
// and the gateway (retry.max_retry_after: 1) does not wait that long for it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchboardError, status } from '../index.js';
import { collect, connect, env, rejection } from './gateway.js';

test("an upstream 429 is RESOURCE_EXHAUSTED with the upstream's delay as RetryInfo", async (t) => {
  const client = connect(t);
  const request = { model: env('SWITCHBOARD_TEST_RATE_LIMITED_MODEL'), messages: ['busy?'] };
  const err = await rejection(() => client.chat(request));
  assert.ok(err instanceof SwitchboardError, String(err));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.equal(err.reason, 'UPSTREAM_RATE_LIMITED');
  // A fractional delay, exactly the upstream's: RetryInfo's seconds and nanos both decoded.
  assert.equal(err.retryAfter, 7.25);
  assert.deepEqual(err.quotaViolations, []);

  // The upstream key now cools down for those 7.25 s: a stream right after is refused by the
  // gateway with what is left of the delay, without calling the upstream.
  const cooling = await rejection(() => collect(client.streamChat(request)));
  assert.equal(cooling.code, status.RESOURCE_EXHAUSTED);
  assert.equal(cooling.reason, 'UPSTREAM_RATE_LIMITED');
  assert.ok(
    cooling.retryAfter > 6 && cooling.retryAfter < 7.25,
    `retryAfter ${cooling.retryAfter}`,
  );
});
