// ChatService.Chat, StreamChat and ListModels against a running gateway: answers, frames,
// errors decoded from google.rpc.Status, the request id, deadlines and cancellation.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspect } from 'node:util';
import {
  AttemptOutcome,
  ChatRequestSchema,
  FinishReason,
  Role,
  SwitchboardError,
  create,
  responseText,
  status,
  system,
  user,
} from '../index.js';
import { CITY_TOOL, DEMO_MODEL, collect, connect, env, rejection, unique } from './gateway.js';

/** @import { StreamChatResponse } from '../index.js' */

test('chat answers on the demo model with usage, cost and route', async (t) => {
  const client = connect(t);
  const prompt = unique('hello node');
  const response = await client.chat({ model: DEMO_MODEL, messages: [prompt], maxTokens: 64 });
  assert.equal(responseText(response), `Echo: ${prompt}`);
  assert.equal(response.message?.role, Role.ASSISTANT);
  assert.deepEqual(
    response.message?.content.map((part) => part.part.case),
    ['text'],
  );
  assert.equal(response.model, DEMO_MODEL);
  assert.equal(response.finishReason, FinishReason.STOP);
  assert.ok(response.usage && response.usage.inputTokens > 0n && response.usage.outputTokens > 0n);
  assert.equal(response.cost?.totalUsd, 0); // the demo model is free
  assert.equal(response.route?.provider, 'demo');
  assert.equal(response.route?.deployment, DEMO_MODEL);
  assert.deepEqual(
    response.route?.attempts.map((a) => a.outcome),
    [AttemptOutcome.SUCCESS],
  );
  assert.ok(response.id);
  assert.ok(response.created > 0n);
});

test('chat takes a ChatRequest built with create() and the message helpers', async (t) => {
  const client = connect(t);
  const request = create(ChatRequestSchema, {
    model: DEMO_MODEL,
    messages: [system('Be brief.'), user('first'), user('second')],
    maxTokens: 1,
  });
  const response = await client.chat(request);
  // The demo echoes the last user message and honours max_tokens (one word): finish "length".
  assert.equal(responseText(response), 'Echo:');
  assert.equal(response.finishReason, FinishReason.LENGTH);
  assert.equal(response.usage?.outputTokens, 1n);
});

test('streamChat yields start, text deltas and end, matching chat', async (t) => {
  const client = connect(t);
  const prompt = unique('stream these words');
  const expected = await client.chat({ model: DEMO_MODEL, messages: [prompt] });
  const frames = await collect(client.streamChat({ model: DEMO_MODEL, messages: [prompt] }));
  const cases = frames.map((f) => f.frame.case);
  assert.equal(cases[0], 'start');
  assert.equal(cases.at(-1), 'end');
  assert.deepEqual(new Set(cases.slice(1, -1)), new Set(['text']));
  assert.ok(cases.length > 3, `only ${cases.length} frames`);
  const start = only(frames[0], 'start');
  const end = only(/** @type {StreamChatResponse} */ (frames.at(-1)), 'end');
  const text = frames
    .slice(1, -1)
    .map((f) => only(f, 'text').text)
    .join('');
  assert.equal(text, responseText(expected));
  assert.equal(start.model, DEMO_MODEL);
  assert.equal(start.route?.provider, 'demo');
  assert.equal(end.id, start.id);
  assert.equal(end.finishReason, FinishReason.STOP);
  assert.deepEqual(end.usage, expected.usage);
});

test('streamChat delivers tool-call deltas when the model calls a tool', async (t) => {
  const client = connect(t);
  const frames = await collect(
    client.streamChat({ model: DEMO_MODEL, messages: ['Weather in Oslo?'], tools: [CITY_TOOL] }),
  );
  const deltas = frames.filter((f) => f.frame.case === 'toolCall').map((f) => only(f, 'toolCall'));
  assert.ok(deltas.length > 0, 'no tool-call delta');
  assert.equal(deltas[0].name, 'weather');
  assert.ok(deltas[0].id);
  const args = JSON.parse(deltas.map((d) => d.arguments).join(''));
  assert.equal(typeof args.city, 'string');
  const end = only(/** @type {StreamChatResponse} */ (frames.at(-1)), 'end');
  assert.equal(end.finishReason, FinishReason.TOOL_CALLS);
});

test('listModels lists the demo model and the configured upstreams', async (t) => {
  const client = connect(t);
  const models = await client.listModels();
  const demo = models.find((m) => m.id === DEMO_MODEL);
  assert.ok(demo, `no ${DEMO_MODEL} in ${models.map((m) => m.id)}`);
  assert.equal(demo.provider, 'demo');
  assert.equal(demo.demo, true);
  const limited = env('SWITCHBOARD_TEST_RATE_LIMITED_MODEL');
  const openai = models.find((m) => m.id === limited);
  assert.ok(openai, `no ${limited} listed`);
  assert.equal(openai.demo, false);
  assert.ok(openai.pricing && openai.pricing.inputPerMtok > 0, 'the openai model has no price');
});

test('the request id: a chosen one is used and reported; otherwise the gateway assigns one', async (t) => {
  const client = connect(t);
  const chosen = unique('node-request');
  /** @type {string[]} */
  const seen = [];
  const response = await client.chat(
    { model: DEMO_MODEL, messages: ['id?'] },
    { requestId: chosen, onRequestId: (id) => seen.push(id) },
  );
  assert.deepEqual(seen, [chosen]);
  assert.equal(response.id, chosen);

  const frames = await collect(
    client.streamChat(
      { model: DEMO_MODEL, messages: ['id?'] },
      { onRequestId: (id) => seen.push(id) },
    ),
  );
  assert.equal(seen.length, 2);
  assert.ok(seen[1] && seen[1] !== chosen);
  assert.equal(only(frames[0], 'start').id, seen[1]);

  const err = await rejection(() =>
    client.chat({ model: 'nosuch/model', messages: ['x'] }, { requestId: `${chosen}-2` }),
  );
  assert.equal(err.requestId, `${chosen}-2`);
});

test('an unknown model is NOT_FOUND with ErrorInfo, from chat and from a stream', async (t) => {
  const client = connect(t);
  const request = { model: 'nosuch/model', messages: ['hi'] };
  for (const call of [() => client.chat(request), () => collect(client.streamChat(request))]) {
    const err = await rejection(call);
    assert.ok(err instanceof SwitchboardError, String(err));
    assert.equal(err.code, status.NOT_FOUND);
    assert.equal(err.codeName, 'NOT_FOUND');
    assert.equal(err.reason, 'MODEL_NOT_FOUND');
    assert.equal(err.domain, 'switchboard.dev');
    assert.match(err.message, /nosuch\/model/);
    assert.equal(err.retryAfter, null);
    assert.ok(err.requestId, 'no request id');
    assert.equal(err.metadata.request_id, err.requestId);
    assert.equal(err.toString(), `SwitchboardError: NOT_FOUND MODEL_NOT_FOUND: ${err.message}`);
    const json = /** @type {any} */ (err.toJSON());
    assert.equal(json.status.details[0]['@type'], 'type.googleapis.com/google.rpc.ErrorInfo');
    assert.equal(json.status.details[0].reason, 'MODEL_NOT_FOUND');
  }
});

test('a bad key is UNAUTHENTICATED, and the key appears nowhere in the error', async (t) => {
  const bad = unique('sb-not-a-key');
  const client = connect(t, bad);
  for (const call of [
    () => client.chat({ model: DEMO_MODEL, messages: ['hi'] }),
    () => collect(client.streamChat({ model: DEMO_MODEL, messages: ['hi'] })),
    () => client.listModels(),
  ]) {
    const err = await rejection(call);
    assert.equal(err.code, status.UNAUTHENTICATED);
    assert.equal(err.reason, 'INVALID_API_KEY');
    assert.ok(!JSON.stringify(err.toJSON()).includes(bad), 'the key leaked into the error');
  }
  assert.ok(
    !inspect(client, { showHidden: true, depth: 5 }).includes(bad),
    'the key shows in util.inspect(client)',
  );
});

test('an invalid value is INVALID_ARGUMENT with BadRequest field violations', async (t) => {
  const client = connect(t);
  const err = await rejection(() =>
    client.chat({ model: DEMO_MODEL, messages: ['hi'], temperature: 9 }),
  );
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.equal(err.reason, 'INVALID_REQUEST');
  assert.equal(err.fieldViolations.length, 1);
  assert.equal(err.fieldViolations[0].field, 'temperature');
  assert.match(err.fieldViolations[0].description, /between 0 and 2/);
});

test('a key the contract does not have is refused before anything is sent', async (t) => {
  const client = connect(t);
  /** @type {any} */
  const snake = { model: DEMO_MODEL, messages: ['hi'], max_tokens: 5 };
  const err = await rejection(() => client.chat(snake));
  assert.ok(err instanceof TypeError);
  assert.match(err.message, /no field 'max_tokens' \(did you mean 'maxTokens'\?\)/);

  /** @type {any} */
  const deep = { model: DEMO_MODEL, messages: [{ role: Role.USER, content: [{ txt: 'x' }] }] };
  const nested = await rejection(() => collect(client.streamChat(deep)));
  assert.ok(nested instanceof TypeError);
  assert.match(
    nested.message,
    /request\.messages\[0\]\.content\[0\]: .*ContentPart has no field 'txt'/,
  );

  /** @type {any} */
  const badCase = {
    model: DEMO_MODEL,
    messages: [{ content: [{ part: { case: 'txt', value: 'x' } }] }],
  };
  const oneof = await rejection(() => client.chat(badCase));
  assert.match(oneof.message, /'txt' is not a case of switchboard\.v1\.ContentPart\.part/);
});

test('a deadline ends a call with DEADLINE_EXCEEDED', async (t) => {
  const slow = env('SWITCHBOARD_TEST_SLOW_MODEL');
  const perCall = await rejection(() =>
    connect(t).chat({ model: slow, messages: ['slow'] }, { timeoutMs: 300 }),
  );
  assert.ok(perCall instanceof SwitchboardError);
  assert.equal(perCall.code, status.DEADLINE_EXCEEDED);
  // The client's default deadline applies to every call that sets none.
  const byDefault = connect(t, undefined, { timeoutMs: 300 });
  const streamed = await rejection(() =>
    collect(byDefault.streamChat({ model: slow, messages: ['slow'] })),
  );
  assert.equal(streamed.code, status.DEADLINE_EXCEEDED);
});

test('an AbortSignal cancels a call with CANCELLED, its reason as the cause', async (t) => {
  const client = connect(t);
  const slow = env('SWITCHBOARD_TEST_SLOW_MODEL');
  const signal = AbortSignal.timeout(200);
  const unary = await rejection(() => client.chat({ model: slow, messages: ['slow'] }, { signal }));
  assert.ok(unary instanceof SwitchboardError);
  assert.equal(unary.code, status.CANCELLED);
  assert.equal(unary.cause, signal.reason);

  const controller = new AbortController();
  /** @type {string[]} */
  const seen = [];
  const stream = client.streamChat(
    { model: DEMO_MODEL, messages: ['one two three four five six'] },
    { signal: controller.signal },
  );
  const streamed = await rejection(async () => {
    for await (const frame of stream) {
      seen.push(String(frame.frame.case));
      controller.abort(new Error('enough'));
    }
  });
  assert.equal(streamed.code, status.CANCELLED);
  assert.equal(streamed.cause.message, 'enough');
  assert.ok(seen.length >= 1 && seen.length < 8, `${seen}`);

  const already = AbortSignal.abort();
  const early = await rejection(() => client.listModels({ signal: already }));
  assert.equal(early.code, status.CANCELLED);
  // The channel is still usable after cancelled calls.
  assert.equal(
    responseText(await client.chat({ model: DEMO_MODEL, messages: ['still'] })),
    'Echo: still',
  );
});

test('leaving a stream early ends the call, and the client goes on working', async (t) => {
  const client = connect(t);
  let count = 0;
  for await (const frame of client.streamChat({ model: DEMO_MODEL, messages: ['a b c d e f g'] })) {
    count += 1;
    if (frame.frame.case === 'start') break;
  }
  assert.equal(count, 1);
  assert.equal(
    responseText(await client.chat({ model: DEMO_MODEL, messages: ['after'] })),
    'Echo: after',
  );
});

/**
 * The value of the frame's oneof, asserting which case is set.
 * @template {NonNullable<StreamChatResponse['frame']['case']>} K
 * @param {StreamChatResponse} frame
 * @param {K} kind
 * @returns {Extract<StreamChatResponse['frame'], { case: K }>['value']}
 */
function only(frame, kind) {
  assert.equal(frame.frame.case, kind);
  return /** @type {any} */ (frame.frame.value);
}
