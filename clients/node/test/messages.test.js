// The parts that need no gateway: message helpers, request checks, the tool runner, decoding a
// google.rpc.Status trailer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import {
  ChatRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
  Role,
  StatusSchema,
  SwitchboardError,
  ToolCallSchema,
  create,
  message,
  runTools,
  status,
  toBinary,
  toolResult,
  user,
} from '../index.js';
import { anyPack } from '@bufbuild/protobuf/wkt';
import { chatRequest } from '../lib/messages.js';

test('message helpers build contract messages', () => {
  const hello = user('hello');
  assert.equal(hello.role, Role.USER);
  assert.deepEqual(hello.content[0].part, { case: 'text', value: 'hello' });
  assert.equal(message('developer', 'x').role, Role.DEVELOPER);
  assert.throws(() => message(/** @type {any} */ ('robot'), 'x'), /unknown role 'robot'/);
  const result = toolResult('call_1', 'boom', { isError: true });
  assert.equal(result.role, Role.TOOL);
  assert.equal(result.content[0].part.case, 'toolResult');
  const value = /** @type {any} */ (result.content[0].part.value);
  assert.deepEqual([value.toolCallId, value.content, value.isError], ['call_1', 'boom', true]);
});

test('chatRequest turns strings into user messages and passes a ChatRequest through', () => {
  const request = chatRequest({ model: 'm', messages: ['hi', user('there')], maxTokens: 3 });
  assert.deepEqual(
    request.messages.map((m) => m.role),
    [Role.USER, Role.USER],
  );
  assert.equal(request.maxTokens, 3);
  const built = create(ChatRequestSchema, { model: 'm' });
  assert.equal(chatRequest(built), built);
  // Struct fields are plain JSON objects and are not walked by the key check.
  const tools = [{ name: 't', parameters: { type: 'object', any_key: { nested_key: 1 } } }];
  assert.deepEqual(chatRequest({ model: 'm', tools }).tools[0].parameters, tools[0].parameters);
  assert.throws(() => chatRequest(/** @type {any} */ ('hi')), TypeError);
});

test('runTools: results by call id; bad JSON, non-object arguments and unknown tools are errors', async () => {
  const calls = [
    { id: 'a', name: 'add', arguments: '{"x": 1, "y": 2}' },
    { id: 'b', name: 'add', arguments: '{"x": 1,' },
    { id: 'c', name: 'add', arguments: '[1, 2]' },
    { id: 'd', name: 'nope', arguments: '{}' },
    { id: 'e', name: 'toString', arguments: '{}' },
    { id: 'f', name: 'none', arguments: '' },
  ].map((init) => create(ToolCallSchema, init));
  const results = await runTools({ add: async ({ x, y }) => x + y, none: () => undefined }, calls);
  assert.deepEqual(
    results.map((r) => [r.toolCallId, r.isError, r.content]),
    [
      ['a', false, '3'],
      ['b', true, results[1].content],
      ['c', true, 'the arguments must be a JSON object'],
      ['d', true, "unknown tool 'nope'"],
      ['e', true, "unknown tool 'toString'"], // not an inherited property
      ['f', false, 'null'],
    ],
  );
  assert.match(results[1].content, /^the arguments are not valid JSON: SyntaxError: /);
});

test('SwitchboardError decodes ErrorInfo and RetryInfo from grpc-status-details-bin', () => {
  const trailer = create(StatusSchema, {
    code: status.UNAVAILABLE,
    message: 'from the status',
    details: [
      anyPack(
        ErrorInfoSchema,
        create(ErrorInfoSchema, { reason: 'R', domain: 'd', metadata: { k: 'v' } }),
      ),
      anyPack(
        RetryInfoSchema,
        create(RetryInfoSchema, { retryDelay: { seconds: 2n, nanos: 500_000_000 } }),
      ),
    ],
  });
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(toBinary(StatusSchema, trailer)));
  metadata.set('x-request-id', 'rid-1');
  const err = SwitchboardError.fromServiceError({ code: 14, details: 'plain', metadata });
  assert.deepEqual(
    [
      err.codeName,
      err.reason,
      err.domain,
      err.metadata,
      err.retryAfter,
      err.message,
      err.requestId,
    ],
    ['UNAVAILABLE', 'R', 'd', { k: 'v' }, 2.5, 'from the status', 'rid-1'],
  );
  assert.equal(err.toJSON().status?.details.length, 2);

  // A detail of a type the client does not know is kept out of the fields, not fatal.
  const custom = create(StatusSchema, {
    code: 9,
    message: 'custom',
    details: [{ typeUrl: 'type.googleapis.com/example.Custom', value: new Uint8Array([8, 1]) }],
  });
  const withCustom = new Metadata();
  withCustom.set('grpc-status-details-bin', Buffer.from(toBinary(StatusSchema, custom)));
  const odd = SwitchboardError.fromServiceError({ code: 9, details: 'x', metadata: withCustom });
  assert.deepEqual([odd.message, odd.details, odd.reason], ['custom', [], '']);
  assert.deepEqual(odd.toJSON().status, {
    code: 9,
    message: 'custom',
    details: [{ '@type': 'type.googleapis.com/example.Custom' }],
  });

  const garbled = new Metadata();
  garbled.set('grpc-status-details-bin', Buffer.from([0xff, 0xff, 0xff]));
  const plain = SwitchboardError.fromServiceError({
    code: 14,
    details: 'plain',
    metadata: garbled,
  });
  assert.deepEqual([plain.message, plain.reason, plain.status], ['plain', '', null]);
});
