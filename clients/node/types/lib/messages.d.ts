/** @import { DescField, DescMessage, DescOneof, MessageInitShape } from '@bufbuild/protobuf' */
/** @import { ChatRequest, ChatResponse } from '../gen/switchboard/v1/chat_pb.js' */
/** @import { Message } from '../gen/switchboard/v1/types_pb.js' */
/**
 * A ChatRequest, or its init object whose `messages` may hold plain strings (user messages).
 * @typedef {ChatRequest | (Omit<MessageInitShape<typeof ChatRequestSchema>, 'messages'> & {
 *   messages?: Array<MessageInitShape<typeof MessageSchema> | string>
 * })} ChatRequestLike
 */
/**
 * A text message; `role` is system, developer, user, assistant or tool.
 * @param {'system' | 'developer' | 'user' | 'assistant' | 'tool'} role
 * @param {string} text
 * @returns {Message}
 */
export function message(role: "system" | "developer" | "user" | "assistant" | "tool", text: string): Message;
/**
 * A user message (the OpenAI `{"role": "user", "content": text}`).
 * @param {string} text
 */
export function user(text: string): Message;
/**
 * A system message.
 * @param {string} text
 */
export function system(text: string): Message;
/**
 * A tool message answering one tool call.
 * @param {string} toolCallId
 * @param {string} content
 * @param {{ isError?: boolean }} [options]
 * @returns {Message}
 */
export function toolResult(toolCallId: string, content: string, { isError }?: {
    isError?: boolean;
}): Message;
/**
 * The assistant text of a ChatResponse (its text parts joined).
 * @param {ChatResponse} response
 */
export function responseText(response: ChatResponse): string;
/**
 * A ChatRequest from one or from its fields, plain strings in `messages` made user messages.
 * @param {ChatRequestLike} request
 * @returns {ChatRequest}
 */
export function chatRequest(request: ChatRequestLike): ChatRequest;
/**
 * Throws a TypeError naming the first key of `init` (at any depth) that `desc` has no field
 * for. Messages of google.protobuf (Struct as a JSON object, Timestamp...) are not walked.
 * @param {DescMessage} desc
 * @param {unknown} init
 * @param {string} where
 */
export function checkInit(desc: DescMessage, init: unknown, where: string): void;
/**
 * A ChatRequest, or its init object whose `messages` may hold plain strings (user messages).
 */
export type ChatRequestLike = ChatRequest | (Omit<MessageInitShape<typeof ChatRequestSchema>, "messages"> & {
    messages?: Array<MessageInitShape<typeof MessageSchema> | string>;
});
import type { Message } from '../gen/switchboard/v1/types_pb.js';
import type { ChatResponse } from '../gen/switchboard/v1/chat_pb.js';
import type { ChatRequest } from '../gen/switchboard/v1/chat_pb.js';
import type { DescMessage } from '@bufbuild/protobuf';
import { ChatRequestSchema } from '../gen/switchboard/v1/chat_pb.js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { MessageSchema } from '../gen/switchboard/v1/types_pb.js';
