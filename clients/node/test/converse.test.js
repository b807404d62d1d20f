// ChatService.Converse through the client's tool runner, against a running gateway: the demo
// model calls the first tool it is given, then says what the tool returned.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FinishReason, status } from '../index.js';
import { CITY_TOOL, DEMO_MODEL, collect, connect, rejection, unique } from './gateway.js';

/** @import { ConverseResponse } from '../index.js' */

const REQUEST = { model: DEMO_MODEL, messages: ['Weather in Paris?'], tools: [CITY_TOOL] };

test('a Converse tool round trip: the tool runs locally and the model answers with its result', async (t) => {
  const client = connect(t);
  /** @type {Array<Record<string, any>>} */
  const calls = [];
  const events = await collect(
    client.converse(REQUEST, {
      tools: {
        weather: (args) => {
          calls.push(args);
          return `sunny in ${args.city}`;
        },
      },
    }),
  );
  assert.equal(calls.length, 1, 'the tool ran once');
  assert.equal(typeof calls[0].city, 'string');

  const kinds = events.map(describe);
  const pause = kinds.indexOf('toolCallsRequired');
  assert.ok(pause > 0, kinds.join(' '));
  // Turn 1: start, the tool call's deltas, end (tool_calls); the pause; turn 2: start, text, end.
  assert.equal(kinds[0], 'frame:start');
  assert.equal(kinds[pause - 1], 'frame:end');
  assert.ok(
    kinds.slice(1, pause - 1).every((k) => k === 'frame:toolCall'),
    kinds.join(' '),
  );
  assert.equal(kinds[pause + 1], 'frame:start');
  assert.equal(kinds.at(-1), 'frame:end');
  assert.ok(
    kinds.slice(pause + 2, -1).every((k) => k === 'frame:text'),
    kinds.join(' '),
  );

  const required = events[pause].event;
  assert.equal(required.case, 'toolCallsRequired');
  const [call] = required.value.toolCalls;
  assert.equal(call.name, 'weather');
  assert.deepEqual(JSON.parse(call.arguments), calls[0]);

  const text = events
    .slice(pause + 2, -1)
    .map((e) =>
      e.event.case === 'frame' && e.event.value.frame.case === 'text'
        ? e.event.value.frame.value.text
        : '',
    )
    .join('');
  assert.equal(text, `The tool weather returned: sunny in ${calls[0].city}`);
});

test('converseResult: the final text, usage and cost summed over the turns, each call with its result', async (t) => {
  const client = connect(t);
  const result = await client.converseResult(REQUEST, {
    tools: { weather: async ({ city }) => ({ city, sky: 'clear' }) }, // async, not a string: JSON
  });
  assert.equal(result.turns.length, 2);
  assert.deepEqual(
    result.turns.map((end) => end.finishReason),
    [FinishReason.TOOL_CALLS, FinishReason.STOP],
  );
  assert.equal(result.finishReason, FinishReason.STOP);
  assert.equal(result.toolCalls.length, 1);
  const [{ call, result: sent }] = result.toolCalls;
  const city = JSON.parse(call.arguments).city;
  assert.equal(sent.toolCallId, call.id);
  assert.equal(sent.name, 'weather');
  assert.equal(sent.isError, false);
  assert.deepEqual(JSON.parse(sent.content), { city, sky: 'clear' });
  assert.equal(result.text, `The tool weather returned: ${sent.content}`);
  const sum = (/** @type {'inputTokens' | 'outputTokens'} */ field) =>
    result.turns.reduce((total, end) => total + (end.usage?.[field] ?? 0n), 0n);
  assert.equal(result.usage.inputTokens, sum('inputTokens'));
  assert.equal(result.usage.outputTokens, sum('outputTokens'));
  assert.ok(result.usage.inputTokens > 0n && result.usage.outputTokens > 0n);
  assert.equal(result.cost.totalUsd, 0);
});

test('a tool that throws, and a tool the client lacks, are sent back as error results', async (t) => {
  const client = connect(t);
  const thrown = await client.converseResult(REQUEST, {
    tools: {
      weather: () => {
        throw new RangeError('no network');
      },
    },
  });
  assert.equal(thrown.toolCalls[0].result.isError, true);
  assert.equal(thrown.toolCalls[0].result.content, 'RangeError: no network');
  assert.equal(thrown.text, 'The tool weather returned: RangeError: no network');

  const missing = await client.converseResult(REQUEST, { tools: {} });
  assert.equal(missing.toolCalls[0].result.isError, true);
  assert.equal(missing.toolCalls[0].result.content, "unknown tool 'weather'");
});

test('Converse carries the request id; each turn is "<id>.<turn>"', async (t) => {
  const client = connect(t);
  const requestId = unique('node-converse');
  /** @type {string[]} */
  const seen = [];
  const result = await client.converseResult(REQUEST, {
    tools: { weather: () => 'fine' },
    requestId,
    onRequestId: (id) => seen.push(id),
  });
  assert.deepEqual(seen, [requestId]);
  assert.deepEqual(
    result.turns.map((end) => end.id),
    [`${requestId}.1`, `${requestId}.2`],
  );
});

test('leaving Converse early cancels it; errors end the loop as a SwitchboardError', async (t) => {
  const client = connect(t);
  let ran = 0;
  for await (const event of client.converse(REQUEST, { tools: { weather: () => `${++ran}` } })) {
    if (event.event.case === 'frame') break;
  }
  assert.equal(ran, 0, 'a tool ran after the caller left');

  const err = await rejection(() =>
    client.converseResult({ ...REQUEST, model: 'nosuch/model' }, { tools: {} }),
  );
  assert.equal(err.code, status.NOT_FOUND);
  assert.equal(err.reason, 'MODEL_NOT_FOUND');

  const deadline = await rejection(() =>
    client.converseResult(REQUEST, {
      tools: { weather: () => new Promise((resolve) => setTimeout(resolve, 2_000, 'late')) },
      timeoutMs: 400, // bounds the whole conversation, tool execution included
    }),
  );
  assert.equal(deadline.code, status.DEADLINE_EXCEEDED);
});

/** @param {ConverseResponse} event */
function describe(event) {
  return event.event.case === 'frame'
    ? `frame:${event.event.value.frame.case}`
    : String(event.event.case);
}
