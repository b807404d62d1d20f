/**
 * Building requests: message helpers (mirroring switchboard_client's `user`, `system`,
 * `message`, `tool_result`) and the check that refuses a key a message type does not have.
 */

import { create, isMessage } from '@bufbuild/protobuf';
import { ChatRequestSchema } from '../gen/switchboard/v1/chat_pb.js';
import {
  ContentPartSchema,
  MessageSchema,
  Role,
  ToolResultSchema,
} from '../gen/switchboard/v1/types_pb.js';

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
export function message(role, text) {
  const value = Role[/** @type {keyof typeof Role} */ (String(role).toUpperCase())];
  if (typeof value !== 'number' || value === Role.UNSPECIFIED) {
    throw new TypeError(`unknown role '${role}'`);
  }
  return create(MessageSchema, { role: value, content: [{ part: { case: 'text', value: text } }] });
}

/**
 * A user message (the OpenAI `{"role": "user", "content": text}`).
 * @param {string} text
 */
export function user(text) {
  return message('user', text);
}

/**
 * A system message.
 * @param {string} text
 */
export function system(text) {
  return message('system', text);
}

/**
 * A tool message answering one tool call.
 * @param {string} toolCallId
 * @param {string} content
 * @param {{ isError?: boolean }} [options]
 * @returns {Message}
 */
export function toolResult(toolCallId, content, { isError = false } = {}) {
  const result = create(ToolResultSchema, { toolCallId, content, isError });
  const part = create(ContentPartSchema, { part: { case: 'toolResult', value: result } });
  return create(MessageSchema, { role: Role.TOOL, content: [part] });
}

/**
 * The assistant text of a ChatResponse (its text parts joined).
 * @param {ChatResponse} response
 */
export function responseText(response) {
  const content = response.message?.content ?? [];
  return content.map(({ part }) => (part.case === 'text' ? part.value : '')).join('');
}

/**
 * A ChatRequest from one or from its fields, plain strings in `messages` made user messages.
 * @param {ChatRequestLike} request
 * @returns {ChatRequest}
 */
export function chatRequest(request) {
  if (request === null || typeof request !== 'object') {
    throw new TypeError('request must be a ChatRequest or its fields');
  }
  if (isMessage(request, ChatRequestSchema)) return request;
  const messages = (request.messages ?? []).map((m) => (typeof m === 'string' ? user(m) : m));
  const init = { ...request, messages };
  checkInit(ChatRequestSchema, init, 'request');
  return create(
    ChatRequestSchema,
    /** @type {MessageInitShape<typeof ChatRequestSchema>} */ (init),
  );
}

// `create()` ignores keys a message type lacks, so a snake_case `max_tokens` (the .proto name;
// the generated field is `maxTokens`) would silently vanish from the request. These tables let
// checkInit refuse such keys before anything is sent.
/** @type {WeakMap<DescMessage, Map<string, DescField | DescOneof>>} */
const memberTables = new WeakMap();

/** @param {DescMessage} desc */
function members(desc) {
  let table = memberTables.get(desc);
  if (!table) {
    table = new Map(desc.members.map((member) => [member.localName, member]));
    memberTables.set(desc, table);
  }
  return table;
}

/**
 * Throws a TypeError naming the first key of `init` (at any depth) that `desc` has no field
 * for. Messages of google.protobuf (Struct as a JSON object, Timestamp...) are not walked.
 * @param {DescMessage} desc
 * @param {unknown} init
 * @param {string} where
 */
export function checkInit(desc, init, where) {
  if (init === null || typeof init !== 'object' || desc.typeName.startsWith('google.protobuf.')) {
    return;
  }
  const table = members(desc);
  for (const [key, value] of Object.entries(init)) {
    if (key === '$typeName' || key === '$unknown') continue;
    const member = table.get(key);
    if (!member) {
      const camel = key.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
      const hint = camel !== key && table.has(camel) ? ` (did you mean '${camel}'?)` : '';
      throw new TypeError(`${where}: ${desc.typeName} has no field '${key}'${hint}`);
    }
    if (value === undefined || value === null) continue;
    if (member.kind === 'oneof') {
      const selected = /** @type {{ case?: string, value?: unknown }} */ (value);
      if (selected.case === undefined) continue;
      const field = member.fields.find((f) => f.localName === selected.case);
      if (!field) {
        const cases = member.fields.map((f) => `'${f.localName}'`).join(', ');
        throw new TypeError(
          `${where}.${key}: '${selected.case}' is not a case of ${desc.typeName}.${member.name} (${cases})`,
        );
      }
      checkValue(field, selected.value, `${where}.${key}.value`);
    } else {
      checkValue(member, value, `${where}.${key}`);
    }
  }
}

/**
 * @param {DescField} field
 * @param {unknown} value
 * @param {string} where
 */
function checkValue(field, value, where) {
  if (field.fieldKind === 'message') {
    checkInit(field.message, value, where);
  } else if (field.fieldKind === 'list' && field.listKind === 'message' && Array.isArray(value)) {
    value.forEach((item, i) => checkInit(field.message, item, `${where}[${i}]`));
  } else if (field.fieldKind === 'map' && field.mapKind === 'message' && value) {
    for (const [k, item] of Object.entries(value)) checkInit(field.message, item, `${where}[${k}]`);
  }
}
