/**
 * Runs the requested calls concurrently; each failure becomes an `isError` result that tells
 * the model what went wrong (unknown tool, bad JSON arguments, the error thrown).
 * @param {Record<string, ToolFunction>} tools
 * @param {readonly ToolCall[]} calls
 * @returns {Promise<ToolResult[]>}
 */
export function runTools(tools: Record<string, ToolFunction>, calls: readonly ToolCall[]): Promise<ToolResult[]>;
/**
 * One call's result (`runTools`).
 * @param {Record<string, ToolFunction>} tools
 * @param {ToolCall} call
 * @returns {Promise<ToolResult>}
 */
export function runTool(tools: Record<string, ToolFunction>, call: ToolCall): Promise<ToolResult>;
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
    text: string;
    /** The last turn's finish reason. */
    finishReason: FinishReason;
    /** @type {StreamEnd[]} each turn's end frame (usage, cost, route) */
    turns: StreamEnd[];
    /** @type {Usage} summed over the turns */
    usage: Usage;
    /** @type {Cost} summed over the turns */
    cost: Cost;
    /** @type {Array<{ call: ToolCall, result: ToolResult }>} every tool call, with what was sent back */
    toolCalls: Array<{
        call: ToolCall;
        result: ToolResult;
    }>;
    /**
     * Folds one server event into the result.
     * @param {ConverseResponse} event
     */
    add(event: ConverseResponse): void;
    #private;
}
/**
 * An async iterable fed by `push`, ended by `close`: the client's side of a bidirectional call
 * whose next message depends on what the server said.
 * @template T
 */
export class Outbox<T> {
    /** @param {T} item */
    push(item: T): void;
    close(): void;
    /** @returns {AsyncIterator<T, undefined>} */
    [Symbol.asyncIterator](): AsyncIterator<T, undefined>;
    #private;
}
/**
 * A local tool: takes the call's parsed JSON arguments and returns (or resolves to) the result
 * text; any other value is sent as JSON. A throw becomes an `isError` result.
 */
export type ToolFunction = (args: Record<string, any>) => unknown;
import type { ToolCall } from '../gen/switchboard/v1/types_pb.js';
import type { ToolResult } from '../gen/switchboard/v1/types_pb.js';
import { FinishReason } from '../gen/switchboard/v1/types_pb.js';
import type { StreamEnd } from '../gen/switchboard/v1/chat_pb.js';
import type { Usage } from '../gen/switchboard/v1/types_pb.js';
import type { Cost } from '../gen/switchboard/v1/types_pb.js';
import type { ConverseResponse } from '../gen/switchboard/v1/chat_pb.js';
