// AdminService through the generated service client, against a running gateway: a key's life,
// its rate limit (RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure), the master key, and a
// method on the client for every RPC of the contract.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AdminService,
  ChatService,
  QuotaFailureSchema,
  RetryInfoSchema,
  SwitchboardClient,
  isMessage,
  responseText,
  status,
} from '../index.js';
import { DEMO_MODEL, connect, connectAdmin, rejection, target, unique } from './gateway.js';

test("a key's life: createKey, listKeys, use, revokeKey", async (t) => {
  const admin = connectAdmin(t);
  const name = unique('node-key');
  const created = await admin.admin.createKey({
    name,
    limits: { requestsPerMinute: 600n, monthlyBudgetUsd: 2.5 },
  });
  const { key, secret } = created;
  assert.ok(key && secret.startsWith('sb-'), 'no key or secret');
  assert.equal(key.name, name);
  assert.ok(secret.startsWith(key.prefix) && key.prefix.length < secret.length);
  assert.equal(key.revoked, false);
  assert.ok(key.createTime && key.createTime.seconds > 0n);
  assert.equal(key.limits?.requestsPerMinute, 600n);
  assert.equal(key.limits?.tokensPerMinute, undefined); // unset: unlimited
  assert.equal(key.limits?.monthlyBudgetUsd, 2.5);

  const listed = (await admin.admin.listKeys({})).keys.find((k) => k.id === key.id);
  assert.ok(listed, 'the new key is not listed');
  assert.equal(listed.name, name);
  assert.ok(
    !JSON.stringify(listed, (_, v) => (typeof v === 'bigint' ? `${v}` : v)).includes(secret),
  );

  const user = connect(t, secret);
  assert.equal(
    responseText(await user.chat({ model: DEMO_MODEL, messages: ['mine'] })),
    'Echo: mine',
  );

  const revoked = await admin.admin.revokeKey({ id: key.id });
  assert.equal(revoked.key?.revoked, true);
  assert.ok(revoked.key?.revokeTime);
  const refused = await rejection(() => user.chat({ model: DEMO_MODEL, messages: ['mine'] }));
  assert.equal(refused.code, status.UNAUTHENTICATED);

  const active = (await admin.admin.listKeys({})).keys.map((k) => k.id);
  const all = (await admin.admin.listKeys({ includeRevoked: true })).keys.map((k) => k.id);
  assert.ok(!active.includes(key.id) && all.includes(key.id));

  const unknown = await rejection(() => admin.admin.revokeKey({ id: 'key_does_not_exist' }));
  assert.equal(unknown.code, status.NOT_FOUND);
});

test('a key over its RPM limit gets RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure', async (t) => {
  const admin = connectAdmin(t);
  const { key, secret } = await admin.admin.createKey({
    name: unique('node-rpm'),
    limits: { requestsPerMinute: 1n },
  });
  assert.ok(key);
  const client = connect(t, secret);
  await client.chat({ model: DEMO_MODEL, messages: ['first'] });
  const err = await rejection(() => client.chat({ model: DEMO_MODEL, messages: ['second'] }));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.equal(err.reason, 'RATE_LIMITED');
  // One request per minute refills in at most 60 s.
  assert.ok(err.retryAfter > 0 && err.retryAfter <= 60, `retryAfter ${err.retryAfter}`);
  assert.equal(err.quotaViolations.length, 1);
  assert.equal(err.quotaViolations[0].subject, `key:${key.id}`);
  assert.match(err.quotaViolations[0].description, /requests_per_minute/);
  const retry = err.details.find((/** @type {any} */ d) => isMessage(d, RetryInfoSchema));
  assert.ok(retry?.retryDelay, 'no RetryInfo detail');
  assert.equal(Number(retry.retryDelay.seconds) + retry.retryDelay.nanos / 1e9, err.retryAfter);
  assert.ok(err.details.some((/** @type {any} */ d) => isMessage(d, QuotaFailureSchema)));
});

test('AdminService needs the master key: an application key is PERMISSION_DENIED', async (t) => {
  const client = connect(t);
  const err = await rejection(() => client.admin.listKeys({}));
  assert.equal(err.code, status.PERMISSION_DENIED);
  assert.ok(err.reason);
});

test('a key AdminService does not have is refused before sending', async (t) => {
  const admin = connectAdmin(t);
  /** @type {any} */
  const request = { name: 'x', limits: { rpm: 5 } };
  const err = await rejection(() => admin.admin.createKey(request));
  assert.ok(err instanceof TypeError);
  assert.match(err.message, /request\.limits: switchboard\.v1\.KeyLimits has no field 'rpm'/);
});

test('every RPC of the contract is a method of the client', async (t) => {
  const client = new SwitchboardClient(target(), 'unused');
  t.after(() => client.close());
  assert.ok(AdminService.methods.length >= 3);
  for (const method of AdminService.methods) {
    const fn = /** @type {Record<string, unknown>} */ (client.admin)[method.localName];
    assert.equal(typeof fn, 'function', `AdminService.${method.name}`);
  }
  // ChatService has a hand-shaped method per RPC (strings as messages, the tool runner):
  // a new RPC must get one here too. The generated client has them all as well.
  const generic = /** @type {Record<string, unknown>} */ (client.service(ChatService));
  for (const method of ChatService.methods) {
    const fn = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (client))[
      method.localName
    ];
    assert.equal(
      typeof fn,
      'function',
      `SwitchboardClient.${method.localName} for ChatService.${method.name}`,
    );
    assert.equal(typeof generic[method.localName], 'function');
  }
});

test('the generic service client calls any service of the contract', async (t) => {
  const client = connect(t);
  const chat = client.service(ChatService);
  const { models } = await chat.listModels({});
  assert.ok(models.some((m) => m.id === DEMO_MODEL));
  const frames = [];
  for await (const frame of chat.streamChat({
    chat: {
      model: DEMO_MODEL,
      messages: [{ role: 3, content: [{ part: { case: 'text', value: 'raw' } }] }],
    },
  })) {
    frames.push(frame.frame.case);
  }
  assert.deepEqual([frames[0], frames.at(-1)], ['start', 'end']);
});
