/**
 * The client half of `ChatService.Converse` (mirrors switchboard_client.converse): running the
 * tools the model asks for, and the result of a whole conversation.
 *
 * The server streams each model turn, pauses with `toolCallsRequired` when the model asks for
 * tools, and continues once it has their results. `SwitchboardClient.converse` answers those
 * pauses by calling the functions in a `tools` object (name → function of the parsed
 * arguments); this module holds what it needs to do that and what `converseResult` returns.
 */

import { create } from '@bufbuild/protobuf';
import {
  CostSchema,
  FinishReason,
  ToolResultSchema,
  UsageSchema,
} from '../gen/switchboard/v1/types_pb.js';

/** @import { ConverseResponse, StreamEnd } from '../gen/switchboard/v1/chat_pb.js' */
/** @import { Cost, ToolCall, ToolResult, Usage } from '../gen/switchboard/v1/types_pb.js' */

/**
 * A local tool: takes the call's parsed JSON arguments and returns (or resolves to) the result
 * text; any other value is sent as JSON. A throw becomes an `isError` result.
 * @typedef {(args: Record<string, any>) => unknown} ToolFunction
 */

/** A whole Converse call, folded from its events (mirrors switchboard_client.ConverseResult). */
export class ConverseResult {
  /** The last turn's text: what the model finally said. */
  text = '';
  /** The last turn's finish reason. */
  finishReason = FinishReason.UNSPECIFIED;
  /** @type {StreamEnd[]} each turn's end frame (usage, cost, route) */
  turns = [];
  /** @type {Usage} summed over the turns */
  usage = create(UsageSchema);
  /** @type {Cost} summed over the turns */
  cost = create(CostSchema);
  /** @type {Array<{ call: ToolCall, result: ToolResult }>} every tool call, with what was sent back */
  toolCalls = [];
  /** @type {string[]} */
  #pieces = [];

  /**
   * Folds one server event into the result.
   * @param {ConverseResponse} event
   */
  add(event) {
    if (event.event.case !== 'frame') return;
    const { frame } = event.event.value;
    if (frame.case === 'text') {
      this.#pieces.push(frame.value.text);
    } else if (frame.case === 'start') {
      // Each turn restarts the text: the result is what the model said last.
      this.#pieces = [];
    } else if (frame.case === 'end') {
      const end = frame.value;
      this.turns.push(end);
      this.text = this.#pieces.join('');
      this.finishReason = end.finishReason;
      addFields(UsageSchema.fields, this.usage, end.usage);
      addFields(CostSchema.fields, this.cost, end.cost);
    }
  }
}

/**
 * Adds each field of `from` into `into` (int64 fields are bigints, doubles numbers).
 * @param {readonly { localName: string }[]} fields
 * @param {object} into
 * @param {object | undefined} from
 */
function addFields(fields, into, from) {
  if (!from) return;
  const target = /** @type {Record<string, any>} */ (into);
  const source = /** @type {Record<string, any>} */ (from);
  for (const { localName } of fields) target[localName] += source[localName];
}

/**
 * Runs the requested calls concurrently; each failure becomes an `isError` result that tells
 * the model what went wrong (unknown tool, bad JSON arguments, the error thrown).
 * @param {Record<string, ToolFunction>} tools
 * @param {readonly ToolCall[]} calls
 * @returns {Promise<ToolResult[]>}
 */
export function runTools(tools, calls) {
  return Promise.all(calls.map((call) => runTool(tools, call)));
}

/**
 * One call's result (`runTools`).
 * @param {Record<string, ToolFunction>} tools
 * @param {ToolCall} call
 * @returns {Promise<ToolResult>}
 */
export async function runTool(tools, call) {
  const result = create(ToolResultSchema, { toolCallId: call.id, name: call.name });
  const fn = Object.hasOwn(tools, call.name) ? tools[call.name] : undefined;
  if (typeof fn !== 'function') return failed(result, `unknown tool '${call.name}'`);
  let args;
  try {
    args = JSON.parse(call.arguments || '{}');
  } catch (err) {
    return failed(result, `the arguments are not valid JSON: ${describe(err)}`);
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    return failed(result, 'the arguments must be a JSON object');
  }
  try {
    const value = await fn(args);
    result.content = typeof value === 'string' ? value : JSON.stringify(value ?? null);
  } catch (err) {
    return failed(result, describe(err));
  }
  return result;
}

/**
 * @param {ToolResult} result
 * @param {string} message
 */
function failed(result, message) {
  result.content = message;
  result.isError = true;
  return result;
}

/** @param {unknown} err */
function describe(err) {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/**
 * An async iterable fed by `push`, ended by `close`: the client's side of a bidirectional call
 * whose next message depends on what the server said.
 * @template T
 */
export class Outbox {
  /** @type {T[]} */
  #queued = [];
  /** @type {((result: IteratorResult<T, undefined>) => void) | null} */
  #waiting = null;
  #closed = false;

  /** @param {T} item */
  push(item) {
    if (this.#closed) throw new Error('push after close');
    if (this.#waiting) {
      const wake = this.#waiting;
      this.#waiting = null;
      wake({ value: item, done: false });
    } else {
      this.#queued.push(item);
    }
  }

  close() {
    this.#closed = true;
    if (this.#waiting) {
      const wake = this.#waiting;
      this.#waiting = null;
      wake({ value: undefined, done: true });
    }
  }

  /** @returns {AsyncIterator<T, undefined>} */
  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this.#queued.length > 0) {
          return Promise.resolve({ value: /** @type {T} */ (this.#queued.shift()), done: false });
        }
        if (this.#closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.#waiting = resolve;
        });
      },
    };
  }
}
