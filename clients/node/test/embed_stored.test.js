// ChatService.Embed, GetStoredResponse and DeleteStoredResponse against a running gateway:
// the demo embedding model's vectors, and a stored response seen only by the key that made it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchboardError, status } from '../index.js';
import { DEMO_MODEL, connect, connectAdmin, rejection, unique } from './gateway.js';

test('embed returns one vector per input, in order, at the asked dimensions', async (t) => {
  const client = connect(t);
  const response = await client.embed({
    model: 'demo/embed',
    inputs: ['first', 'second', { tokens: [1, 2, 3] }],
    dimensions: 8,
  });
  assert.deepEqual(
    response.embeddings.map((e) => e.index),
    [0, 1, 2],
  );
  for (const e of response.embeddings) assert.equal(e.values.length, 8);
  // Deterministic: the same text gives the same vector, another text another one.
  const again = await client.embed({ model: 'demo/embed', inputs: ['first'], dimensions: 8 });
  assert.deepEqual(again.embeddings[0].values, response.embeddings[0].values);
  assert.notDeepEqual(response.embeddings[0].values, response.embeddings[1].values);
  assert.ok(response.usage && response.usage.inputTokens > 0n);
  assert.equal(response.route?.provider, 'demo');
});

test('a stored response is read and deleted by its key, and NOT_FOUND for any other', async (t) => {
  const client = connect(t);
  const prompt = unique('remember');
  const chat = await client.chat({ model: DEMO_MODEL, messages: [prompt], store: true });
  assert.ok(chat.responseId, 'a stored chat has a response id');

  const stored = await client.getStoredResponse(chat.responseId);
  assert.equal(stored?.id, chat.responseId);
  assert.equal(stored?.response?.message?.content[0].part.value, `Echo: ${prompt}`);

  // Another key (here a fresh one from AdminService) does not see it.
  const admin = connectAdmin(t);
  const created = await admin.admin.createKey({ name: unique('other') });
  const other = connect(t, created.secret);
  const err = await rejection(() => other.getStoredResponse(chat.responseId));
  assert.ok(err instanceof SwitchboardError);
  assert.equal(err.code, status.NOT_FOUND);
  assert.match(err.message, new RegExp(chat.responseId));

  assert.equal(await client.deleteStoredResponse(chat.responseId), chat.responseId);
  const gone = await rejection(() => client.getStoredResponse(chat.responseId));
  assert.equal(/** @type {SwitchboardError} */ (gone).code, status.NOT_FOUND);
});
