/**
 * Switchboard's Node client: `SwitchboardClient` over @grpc/grpc-js, with every message type,
 * enum and service descriptor generated from proto/ by protoc-gen-es (`gen/`, `make gen`).
 *
 * Messages are protobuf-es v2 messages: the generated field names (camelCase: `maxTokens`,
 * `toolCallId`), enums as numbers (`Role.USER`), int64 as bigint, oneofs as
 * `{ case: 'text', value: ... }`, and `google.protobuf.Struct` fields as plain JSON objects.
 */

export { SwitchboardClient } from './lib/client.js';
export { ConverseResult, runTools } from './lib/converse.js';
export { SwitchboardError } from './lib/errors.js';
export { message, responseText, system, toolResult, user } from './lib/messages.js';
export { Transport } from './lib/rpc.js';
// The protobuf-es functions a caller needs for these messages (create, JSON, binary).
export {
  create,
  fromBinary,
  fromJson,
  isMessage,
  toBinary,
  toJson,
  toJsonString,
} from '@bufbuild/protobuf';
export { status } from '@grpc/grpc-js';
// The generated contract: schemas (`ChatRequestSchema`), enums (`Role`), services.
export * from './gen/switchboard/v1/admin_pb.js';
export * from './gen/switchboard/v1/chat_pb.js';
export * from './gen/switchboard/v1/types_pb.js';
export * from './gen/google/rpc/error_details_pb.js';
export * from './gen/google/rpc/status_pb.js';
